"""The operation state machine: states, groups and the polling schedule, as pure functions."""

from __future__ import annotations

import math
from collections.abc import Sequence

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
    # Asks the broker what it holds (GET the instance) and compares it with the portal's record: drift.
    REFRESH = "refresh", "Check at the broker"


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


def poll_delay(*, polls: int, elapsed: float, history: Sequence[float] = (), jitter: float = 0.0) -> float:
    """Seconds until the next poll when the broker gave no Retry-After.

    `history`: how long this plan's recent operations of the same type took (seconds from acceptance to the end).
    With at least MIN_HISTORY of them the schedule is learned (`learned_poll_times`): sparse before the expected
    finish, dense (<= 10 s apart) around it. Otherwise it starts at 2 s and grows by 1.5x up to 30 s, so short
    operations are seen quickly; after ten minutes the broker is asked once a minute. (5 min op: 15 polls,
    <= 30 s late, also when it runs a little over; 1 h op: ~75 polls, <= 60 s late.)

    `jitter` in [0, 1) is this operation's own constant (`operation_jitter`): up to 10 % longer delays while
    backing off (never past the cap), up to 0.85 s earlier polls on a learned schedule. Operations started together
    drift apart instead of polling together, with no extra poll and no detection later than the cap.
    """
    if len(history) >= MIN_HISTORY:
        return _learned_delay(elapsed, history, jitter)
    cap = LATE_CAP_SECONDS if elapsed >= LATE_AFTER_SECONDS else EARLY_CAP_SECONDS
    # While backing off a little longer (never past the cap): operations started together drift apart, by up to
    # 10 % of the time it takes to reach the cap, and poll no more often than without jitter.
    return min(FIRST_POLL_SECONDS * BACKOFF_FACTOR ** max(polls, 0) * (1 + JITTER * jitter), cap)


JITTER = 0.1
MIN_HISTORY = 5
HISTORY_SIZE = 20
DENSE_STEPS = 6  # the expected window (10th to 90th percentile of the history) is covered in this many steps
DENSE_MIN_STEP = 2.0
DENSE_MAX_STEP = 8.5  # + at most 1 s of jitter: a finish inside the window is seen within 10 s
SPARSE_MAX_GAP = 300.0


def operation_jitter(key: str) -> float:
    """A stable number in [0, 1) for an operation (from its id): its share of the polling spread."""
    import hashlib

    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 2**32


def learned_poll_times(history: Sequence[float]) -> tuple[list[float], float]:
    """Poll times (seconds after acceptance) learned from past durations, and the dense step.

    The expected window is the history's 10th..90th percentile [lo, hi]. Before it: a poll at 2 s (quick
    failures) and a few evenly spread ones (at most SPARSE_MAX_GAP apart); inside it: every `step` seconds
    (the window in DENSE_STEPS steps, 2..8.5 s); after it the delays grow again from `step`.
    """
    ordered = sorted(history)
    n = len(ordered)
    lo = ordered[int(0.1 * (n - 1))]
    hi = ordered[round(0.9 * (n - 1))]
    step = min(max((hi - lo) / DENSE_STEPS, DENSE_MIN_STEP), DENSE_MAX_STEP)
    times = [FIRST_POLL_SECONDS]
    sparse = max(3, math.ceil(lo / SPARSE_MAX_GAP))
    times += [lo * k / sparse for k in range(1, sparse)]
    dense = max(math.ceil((hi - lo) / step - 1e-9), 0)
    times += [lo + k * step for k in range(dense + 1)]
    times = sorted(t for t in set(times) if t >= FIRST_POLL_SECONDS)
    # drop sparse points that would crowd the dense ones
    kept: list[float] = []
    for t in times:
        if kept and t < lo and t - kept[-1] < step:
            continue
        kept.append(t)
    return kept, step


def _learned_delay(elapsed: float, history: Sequence[float], jitter: float) -> float:
    times, step = learned_poll_times(history)
    shift = min(1.0, JITTER * step) * jitter
    for t in times:
        if t - shift > elapsed + 0.25:
            return max(t - shift - elapsed, 0.5)
    cap = LATE_CAP_SECONDS if elapsed >= LATE_AFTER_SECONDS else EARLY_CAP_SECONDS
    overdue = elapsed - (times[-1] - shift)
    return min(max(step, 0.5 * overdue), cap)


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
