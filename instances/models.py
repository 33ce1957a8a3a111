"""Service instances, their operations, and the record of every OSB call made for them."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from brokers.models import Broker, ServicePlan
from brokers.osb import StoredRequest, request_from_json
from catalog_portal import crypto
from instances.states import (
    ACTIVE,
    DELETES,
    TERMINAL,
    BindingState,
    InstanceState,
    OpState,
    OpType,
    Phase,
    PublicationState,
)
from telemetry.logs import current_request_id

# The active states in declaration order (ACTIVE is a set: its order changes between runs, the migrations' must not).
ACTIVE_STATES = [state.value for state in OpState if state in ACTIVE]


class InstanceQuerySet(models.QuerySet):
    def visible(self) -> InstanceQuerySet:
        """Instances that exist (a successfully deprovisioned one is kept only for history)."""
        return self.exclude(state=InstanceState.DELETED)


class ServiceInstance(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)  # also the OSB instance_id
    name = models.CharField(max_length=63)
    namespace = models.CharField(max_length=63, db_index=True)
    broker = models.ForeignKey(Broker, on_delete=models.PROTECT, related_name="instances")
    plan = models.ForeignKey(ServicePlan, on_delete=models.PROTECT, related_name="instances")
    parameters = models.JSONField(default=dict, blank=True)
    # Sent as `context` on every request for this instance; fixed at creation so retries are identical.
    context = models.JSONField(default=dict)
    dashboard_url = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    maintenance_info = models.JSONField(null=True, blank=True)
    state = models.CharField(max_length=20, choices=InstanceState.choices, default=InstanceState.PROVISIONING)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    # Drift (issue 17): what the last check at the broker found. `drift` is the list of differences
    # [{"field", "portal", "broker"}] (empty: in sync), None until a check succeeded; `drift_error` why the last
    # check could not tell. `drift_due_at`: when the periodic check looks again.
    drift = models.JSONField(null=True, blank=True)
    drift_checked_at = models.DateTimeField(null=True, blank=True)
    drift_error = models.TextField(blank=True)
    drift_due_at = models.DateTimeField(null=True, blank=True, db_index=True)

    objects = InstanceQuerySet.as_manager()

    class Meta:
        ordering = ["namespace", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["namespace", "name"], condition=~Q(state="deleted"), name="instance_unique_name_in_namespace"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    def get_absolute_url(self) -> str:
        return reverse("instances:detail", args=[self.pk])

    @property
    def is_deleted(self) -> bool:
        return self.state == InstanceState.DELETED


class BindingQuerySet(models.QuerySet):
    def visible(self) -> BindingQuerySet:
        return self.exclude(state=BindingState.DELETED)


class ServiceBinding(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)  # also the OSB binding_id
    instance = models.ForeignKey(ServiceInstance, on_delete=models.CASCADE, related_name="bindings")
    name = models.CharField(max_length=63)
    namespace = models.CharField(max_length=63, db_index=True)
    secret_name = models.CharField(max_length=253)
    parameters = models.JSONField(default=dict, blank=True)
    # Sent as `context` / `bind_resource`; fixed at creation so retries are identical.
    context = models.JSONField(default=dict)
    bind_resource = models.JSONField(default=dict)
    state = models.CharField(max_length=20, choices=BindingState.choices, default=BindingState.BINDING)
    # credentials, syslog_drain_url, route_service_url, volume_mounts, endpoints: encrypted with CREDENTIALS_KEY.
    secrets_encrypted = models.TextField(blank=True, editable=False)
    metadata = models.JSONField(default=dict, blank=True)  # expires_at, renew_before
    publication_state = models.CharField(
        max_length=20, choices=PublicationState.choices, default=PublicationState.PENDING
    )
    publication_message = models.TextField(blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    publication_hash = models.CharField(max_length=64, blank=True)
    publication_next_at = models.DateTimeField(null=True, blank=True, db_index=True)
    publication_attempts = models.PositiveIntegerField(default=0)
    # Rotation (instances/services/rotation.py): a successor is a new binding with the same name and Secret; it
    # takes them over (`current`) once the broker made it, and the predecessor is unbound at `retire_at`.
    predecessor = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="successors")
    # The bind carried predecessor_binding_id (the plan is binding_rotatable): the broker links the two.
    rotation_linked = models.BooleanField(default=False)
    # Holds the name and the Secret: False for a successor not yet bound and for a predecessor being retired.
    current = models.BooleanField(default=True)
    # When the broker's renew_before / expires_at say to rotate it (the sweeper does); None: not automatic.
    rotate_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # A predecessor whose successor's credentials are in the Secret: unbound at this time (the sweeper does).
    retire_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # Why the last automatic rotation could not start (shown on the page); empty otherwise.
    rotation_message = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    # Drift (issue 17), as on the instance: the differences the last check found (parameters), when it answered,
    # and why the last check could not tell.
    drift = models.JSONField(null=True, blank=True)
    drift_checked_at = models.DateTimeField(null=True, blank=True)
    drift_error = models.TextField(blank=True)

    objects = BindingQuerySet.as_manager()

    class Meta:
        ordering = ["namespace", "name"]
        constraints = [
            # One current binding per name and per Secret; a rotation's pair shares both, one of them current.
            models.UniqueConstraint(
                fields=["namespace", "name"], condition=~Q(state="deleted") & Q(current=True),
                name="binding_unique_name_in_namespace",
            ),
            models.UniqueConstraint(
                fields=["namespace", "secret_name"], condition=~Q(state="deleted") & Q(current=True),
                name="binding_unique_secret",
            ),
            # One rotation at a time: a binding has at most one successor being made or made.
            models.UniqueConstraint(
                fields=["predecessor"], condition=Q(state__in=["binding", "ready"]),
                name="binding_one_live_successor",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def is_deleted(self) -> bool:
        return self.state == BindingState.DELETED

    @property
    def secrets(self) -> dict:
        """What the broker returned for this binding (decrypted); empty until it succeeded."""
        return crypto.decrypt_json(self.secrets_encrypted) if self.secrets_encrypted else {}

    def set_secrets(self, value: dict) -> None:
        self.secrets_encrypted = crypto.encrypt_json(value) if value else ""


class Operation(models.Model):
    """One broker-changing action. The row is the truth; Celery messages only nudge workers to look."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=30, choices=OpType.choices)
    state = models.CharField(max_length=20, choices=OpState.choices, default=OpState.PENDING, db_index=True)
    phase = models.CharField(max_length=10, choices=Phase.choices, default=Phase.SUBMIT)
    instance = models.ForeignKey(ServiceInstance, on_delete=models.CASCADE, related_name="operations")
    # Set for bind, unbind and a binding's cleanup; those don't hold the instance's one-operation slot.
    binding = models.ForeignKey(
        ServiceBinding, null=True, blank=True, on_delete=models.CASCADE, related_name="operations"
    )
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="followups")
    # The OSB request (brokers.osb.requests, `to_json()`), frozen at creation: the engine sends exactly this, so a
    # retried request is byte for byte the first one. Only what the broker receives; the portal's own notes are
    # fields of their own (below).
    request = models.JSONField(default=dict)
    # A cleanup after a failed delete: once the broker confirms it is gone, the instance (or binding) is deleted in
    # the portal too.
    delete_on_success = models.BooleanField(default=False)
    # The person who caused it (their originating identity goes with the request), if any.
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    identity = models.JSONField(null=True, blank=True)
    # The id of the web request that started it (X-Request-ID), for the logs of every step; a cleanup started by
    # a worker inherits it from the operation it cleans up after. Taken from the log context when created.
    request_id = models.CharField(max_length=100, blank=True, default=current_request_id, editable=False)
    broker_operation = models.TextField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    polls = models.PositiveIntegerField(default=0)
    next_poll_at = models.DateTimeField(null=True, blank=True, db_index=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    deadline = models.DateTimeField(null=True, blank=True)
    description = models.TextField(blank=True)
    next_step = models.TextField(blank=True)
    error = models.TextField(blank=True)
    instance_usable = models.BooleanField(null=True, blank=True)
    update_repeatable = models.BooleanField(null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["instance"], condition=Q(state__in=ACTIVE_STATES, binding__isnull=True),
                name="one_active_operation_per_instance",
            ),
            models.UniqueConstraint(
                fields=["binding"], condition=Q(state__in=ACTIVE_STATES, binding__isnull=False),
                name="one_active_operation_per_binding",
            ),
            # Stuck work is impossible: an active operation always has a lease or a next check time.
            models.CheckConstraint(
                condition=~Q(state__in=ACTIVE_STATES) | Q(next_poll_at__isnull=False) | Q(claimed_until__isnull=False),
                name="active_operation_is_scheduled",
            ),
        ]
        indexes = [models.Index(fields=["state", "next_poll_at"])]

    def __str__(self) -> str:
        return f"{self.get_type_display()} of {self.binding or self.instance} ({self.state})"

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def title(self) -> str:
        """What people read ("Cleaning up at the broker", not "Orphan mitigation")."""
        from instances.timeline import title

        return title(self.type)

    @property
    def osb_request(self) -> StoredRequest:
        """The stored request as its typed value (what the engine sends)."""
        return request_from_json(self.request)


class OperationCall(models.Model):
    """One OSB request made for an operation: what was sent and what came back (secrets redacted)."""

    operation = models.ForeignKey(Operation, on_delete=models.CASCADE, related_name="calls")
    method = models.CharField(max_length=10)
    path = models.TextField()
    status = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    request_id = models.CharField(max_length=64)
    at = models.DateTimeField()
    error = models.TextField(null=True, blank=True)
    request_excerpt = models.TextField(blank=True)
    response_excerpt = models.TextField(blank=True)
    # What the conformance scorecard reads (brokers.osb.CallRecord has the meaning of each).
    retry_after = models.CharField(max_length=100, blank=True)
    malformed = models.BooleanField(default=False)
    error_code = models.CharField(max_length=100, blank=True)
    error_described = models.BooleanField(null=True, blank=True)

    class Meta:
        ordering = ["at", "id"]
        # The scorecard reads a broker's calls of the last days, newest first.
        indexes = [models.Index(fields=["at"], name="operationcall_at")]

    def __str__(self) -> str:
        return f"{self.method} {self.path} → {self.status}"

    @property
    def is_gone(self) -> bool:
        """410 Gone that the engine counts as success: the answer to a DELETE (deprovision, unbind, cleanup), or to
        a deprovision's or an unbind's last_operation poll. To a create or an update poll it is not."""
        return self.status == 410 and (self.method == "DELETE" or self.operation.type in DELETES)

    @property
    def is_failure(self) -> bool:
        """No answer, or an error status that is not an expected 410 Gone (drawn as failed in the timeline)."""
        return not self.is_gone and (bool(self.error) or not self.status or self.status >= 400)


class UpgradeBatch(models.Model):
    """Upgrades of many instances to their plan's newer maintenance version, a few at a time (issue 17).

    The rows are the truth: the sweeper (and a nudge when one of its updates finishes) advances a running batch by
    `upgrade_batch_advance`; each upgrade is an ordinary update operation (UpgradeItem.operation).
    """

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        CANCELLED = "cancelled", "Cancelled"
        FINISHED = "finished", "Finished"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    state = models.CharField(max_length=20, choices=State.choices, default=State.RUNNING, db_index=True)
    plan = models.ForeignKey(ServicePlan, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    max_parallel = models.PositiveIntegerField(default=5)
    # Pause once this many upgrades failed since the batch started or was last resumed.
    max_failures = models.PositiveIntegerField(default=1)
    failures_before_resume = models.PositiveIntegerField(default=0)
    pause_reason = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Upgrade batch {self.pk} ({self.state})"

    def get_absolute_url(self) -> str:
        return reverse("instances:upgrade-batch", args=[self.pk])


class UpgradeItem(models.Model):
    """One instance of an upgrade batch, and the update operation that upgrades it."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    batch = models.ForeignKey(UpgradeBatch, on_delete=models.CASCADE, related_name="items")
    instance = models.ForeignKey(ServiceInstance, on_delete=models.CASCADE, related_name="upgrade_items")
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING)
    from_version = models.CharField(max_length=100, blank=True)
    to_version = models.CharField(max_length=100, blank=True)
    operation = models.ForeignKey(Operation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    error = models.TextField(blank=True)
    position = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["batch", "position"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "instance"], name="upgrade_item_unique_instance"),
        ]

    def __str__(self) -> str:
        return f"{self.instance} ({self.state})"
