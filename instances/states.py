"""The operation state machine: states, groups and the polling schedule, as pure functions."""

from __future__ import annotations

from django.db import models


class OpState(models.TextChoices):
    PENDING = "pending", "Pending"
    IN_PROGRESS = "in_progress", "In progress"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


ACTIVE = frozenset({OpState.PENDING, OpState.IN_PROGRESS})
TERMINAL = frozenset({OpState.SUCCEEDED, OpState.FAILED})
# Which state an operation may move to from each state (terminal states go nowhere). The engine claims only
# operations that may move to in_progress and checks each change it writes (services/operations.py).
ALLOWED = {
    OpState.PENDING: {OpState.IN_PROGRESS, *TERMINAL},
    OpState.IN_PROGRESS: {OpState.IN_PROGRESS, *TERMINAL},
}


class OpType(models.TextChoices):
    PROVISION = "provision", "Provision"
    UPDATE = "update", "Update"
    DEPROVISION = "deprovision", "Deprovision"
    BIND = "bind", "Bind"
    UNBIND = "unbind", "Unbind"
    ORPHAN_MITIGATION = "orphan_mitigation", "Orphan mitigation"


BINDING_TYPES = frozenset({OpType.BIND, OpType.UNBIND})
CREATES = (OpType.PROVISION, OpType.BIND)
DELETES = (OpType.DEPROVISION, OpType.UNBIND)


class Phase(models.TextChoices):
    WAIT = "wait", "Wait for the bindings to be removed"
    SUBMIT = "submit", "Send the request"
    POLL = "poll", "Poll the last operation"
    FETCH = "fetch", "Fetch the result"


class InstanceState(models.TextChoices):
    PROVISIONING = "provisioning", "Provisioning"
    READY = "ready", "Ready"
    UPDATING = "updating", "Updating"
    DEPROVISIONING = "deprovisioning", "Deprovisioning"
    FAILED = "failed", "Failed"
    DELETED = "deleted", "Deleted"


class BindingState(models.TextChoices):
    BINDING = "binding", "Binding"
    READY = "ready", "Ready"
    UNBINDING = "unbinding", "Unbinding"
    FAILED = "failed", "Failed"
    # An unbind the broker accepted but did not finish within the polling limit: it may have deleted the binding.
    # Not usable, credentials not shown; unbinding again settles it.
    UNKNOWN = "unknown", "Unbind outcome unknown"
    DELETED = "deleted", "Deleted"


class PublicationState(models.TextChoices):
    PENDING = "pending", "Pending"
    PUBLISHED = "published", "Published"
    NOT_CONFIGURED = "not_configured", "Not configured"
    FAILED = "failed", "Failed"
    REMOVED = "removed", "Removed"
    HANDED_OVER = "handed_over", "Handed to the successor"


class InvalidTransition(Exception):
    """A state change the state machine does not allow (a bug: the engine never asks for one)."""


def can_transition(current: str, target: str) -> bool:
    """May an operation in state `current` move to `target`? (The engine checks every change it writes.)"""
    return target in ALLOWED.get(OpState(current), set())


# --- polling schedule ------------------------------------------------------------------------------

FIRST_POLL_SECONDS = 2.0
BACKOFF_FACTOR = 1.5
EARLY_CAP_SECONDS = 30.0
LATE_CAP_SECONDS = 60.0
LATE_AFTER_SECONDS = 10 * 60.0


def poll_delay(*, polls: int, elapsed: float) -> float:
    """Seconds until the next poll when the broker gave no Retry-After.

    Starts at 2 s and grows by 1.5x up to 30 s, so short operations are seen quickly; after ten minutes
    the broker is asked once a minute. (5 min op: 15 polls, <= 30 s late, also when it runs a little over;
    1 h op: ~75 polls, <= 60 s late.)
    """
    cap = LATE_CAP_SECONDS if elapsed >= LATE_AFTER_SECONDS else EARLY_CAP_SECONDS
    return min(FIRST_POLL_SECONDS * BACKOFF_FACTOR ** max(polls, 0), cap)


def retry_delay(*, attempts: int, cap: float = 300.0) -> float:
    """Backoff for resending a request the broker could not take (unreachable, busy, 5xx on cleanup)."""
    return min(FIRST_POLL_SECONDS * 2 ** max(attempts - 1, 0), cap)


def describe_wait(seconds: float) -> str:
    seconds = max(round(seconds), 0)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds / 3600)} h"
