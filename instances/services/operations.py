"""The operation engine: one step of an operation at a time, claimed by lease, applied by compare-and-set.

`operation_step` is the only entry point. It claims the operation row (so two workers never act on the same
operation at once), makes at most one OSB call, and writes the outcome, the instance's new state and the
call record in one transaction. It returns how many seconds until the next step, or None when there is
nothing more to do. A worker killed between claim and write loses nothing: the lease expires and the
sweeper dispatches the step again, which resends the same frozen request.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from brokers.metrics import osb_call_rows
from brokers.osb import (
    BindRequest,
    CallRecord,
    OSBAsyncRequired,
    OSBClient,
    OSBConcurrencyError,
    OSBConnectionError,
    OSBError,
    OSBGone,
    OSBMaintenanceInfoConflict,
    OSBMalformedResponse,
    OSBServerError,
    OSBTimeout,
    ProvisionRequest,
    UpdateRequest,
)
from brokers.services import broker_client, broker_request_sync
from brokers.throttle import Wait, call_slot, pause_from_answers
from catalog_portal import leases
from catalog_portal.tasks import enqueue_on_commit
from instances import metrics
from instances.models import Operation, OperationCall, ServiceInstance
from instances.services.identity import originating_identity
from instances.states import (
    ACTIVE,
    CREATES,
    DELETES,
    HISTORY_SIZE,
    BindingState,
    InstanceState,
    InvalidTransition,
    OpState,
    OpType,
    Phase,
    can_transition,
    describe_wait,
    operation_jitter,
    poll_delay,
    retry_delay,
)
from telemetry.counters import record
from telemetry.logs import log_context

logger = logging.getLogger(__name__)


@dataclass
class Decision:
    """What one step concluded; `_apply` writes it."""

    state: str = OpState.IN_PROGRESS
    phase: str | None = None
    delay: float | None = None
    description: str | None = None
    next_step: str = ""
    error: str = ""
    broker_operation: str | None = None
    accepted: bool = False
    attempt: bool = False
    poll: bool = False
    instance_usable: bool | None = None
    update_repeatable: bool | None = None
    instance: dict[str, Any] = field(default_factory=dict)
    binding: dict[str, Any] = field(default_factory=dict)
    orphan_mitigation: bool = False


def lease_seconds() -> float:
    return float(settings.OPERATION_LEASE_SECONDS)


# --- claim -----------------------------------------------------------------------------------------


# A message may fire a little before the row's next_poll_at (timer rounding, clock skew between hosts).
EARLY_TOLERANCE = timedelta(seconds=0.5)
# Retry-After is honoured as given, but never below this: "0" repeated would be a tight loop.
MIN_RETRY_AFTER = 1.0


# The states from which a worker may take an operation on (to in_progress): the active ones.
CLAIMABLE = frozenset(state for state in OpState if can_transition(state, OpState.IN_PROGRESS))


def _claim(operation_id: Any) -> Operation | None:
    now = timezone.now()
    lease_until = now + timedelta(seconds=lease_seconds())
    claimed = (
        Operation.objects.filter(pk=operation_id, state__in=CLAIMABLE, next_poll_at__lte=now + EARLY_TOLERANCE)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(claimed_until=lease_until, state=OpState.IN_PROGRESS)
    )
    if not claimed:
        return None  # terminal, not yet due, or another worker holds it
    # The step needs the plan's and offering's flags, not their catalog documents (schemas, metadata, raw JSON):
    # decoding those on every step cost more than the broker call.
    return (Operation.objects.select_related("instance__plan__offering", "instance__broker", "binding",
                                             "requested_by").defer(*_NOT_NEEDED_BY_A_STEP).get(pk=operation_id))


_NOT_NEEDED_BY_A_STEP = (
    *(f"instance__plan__{name}" for name in ("description", "metadata", "bullets", "costs", "schemas", "raw",
                                             "schemas_changed")),
    *(f"instance__plan__offering__{name}" for name in (
        "description", "tags", "requires", "metadata", "dashboard_client", "long_description", "raw", "search_text",
        "tag_index")),
)


def operation_step(*, operation_id: Any) -> float | None:
    """Run the next step of an operation if it is due and unclaimed. Safe to call any number of times.

    A message that finds nothing to do (a duplicate, or one for a step another worker runs) ends there: the
    message chain that owns the step reschedules it, and the sweeper covers lost messages.
    """
    op = _claim(operation_id)
    if op is None:
        return None
    with log_context(request_id=op.request_id, operation_id=op.pk, instance_id=op.instance_id,
                     broker=op.instance.broker.name, user=op.requested_by.get_username() if op.requested_by else None):
        phase = op.phase
        # The heartbeat renews our lease while we work (also during a long call); it stops before _apply, so the
        # lease _apply compares and sets on is the last one written.
        with leases.held(lambda: _renew_lease(op), interval=float(settings.OPERATION_HEARTBEAT_SECONDS)):
            decision, calls = _run(op)
        delay = _apply(op, decision, calls)
        answers = ", ".join(f"{call.method} {call.status or 'no answer'}" for call in calls) or "no call"
        logger.info("Operation %s (%s, %s step): %s; %s", op.pk, op.type, phase, answers, decision.state)
        return delay


def _run(op: Operation) -> tuple[Decision, list[CallRecord]]:
    """Decide the step, calling the broker if it takes calls now (its limit and pause: brokers/throttle.py)."""
    calls: list[CallRecord] = []
    broker = op.instance.broker
    try:
        with call_slot(broker) as wait:
            if wait is not None:
                return _deferred(op, wait), calls
            with broker_client(broker=broker, recorder=calls.append) as client:
                decision = _decide(op, client)
    except Exception as exc:  # a bug or a database hiccup must not strand the operation
        logger.exception("Operation %s step crashed", op.pk)
        decision = _retry(op, f"An internal error interrupted this step ({type(exc).__name__}); retrying")
    try:
        pause_from_answers(broker, [(call.status, call.retry_after) for call in calls])
    except Exception:
        logger.exception("Could not record the broker's pause")
    return decision, calls


def _renew_lease(op: Operation) -> bool:
    """The heartbeat: extend our lease on `op` if it is still ours (compare-and-set on the lease we wrote)."""
    until = timezone.now() + timedelta(seconds=lease_seconds())
    if Operation.objects.filter(pk=op.pk, claimed_until=op.claimed_until, state=op.state).update(
            claimed_until=until) == 1:
        op.claimed_until = until
        return True
    logger.warning("Operation %s: lease lost while the step was running", op.pk)
    return False


def _deferred(op: Operation, wait: Wait) -> Decision:
    """No call now (the broker is paused or at its limit): the same step again later, no attempt counted."""
    delay = max(wait.seconds, 0.0) + 0.5 * operation_jitter(str(op.pk)) + 0.1
    next_step = op.next_step
    if wait.paused:
        next_step = f"{wait.reason}; the next call is in {describe_wait(delay)}."
    return Decision(delay=delay, next_step=next_step)


# --- polling history --------------------------------------------------------------------------------

HISTORY_TTL_SECONDS = 60.0
_history_cache: dict[tuple[Any, str], tuple[float, list[float]]] = {}
_history_lock = threading.Lock()


def plan_history(plan_id: Any, op_type: str) -> list[float]:
    """How long (seconds from the broker's 202 to the end) the plan's last operations of this type took, for the
    learned polling schedule; cached per process for a minute (it is the same for every step of the plan)."""
    key = (plan_id, op_type)
    now = time.monotonic()
    with _history_lock:
        cached = _history_cache.get(key)
        if cached is not None and now - cached[0] < HISTORY_TTL_SECONDS:
            return cached[1]
    rows = (Operation.objects.filter(instance__plan_id=plan_id, type=op_type, state=OpState.SUCCEEDED,
                                     accepted_at__isnull=False, finished_at__isnull=False)
            .order_by("-finished_at").values_list("accepted_at", "finished_at")[:HISTORY_SIZE])
    durations = [(finished - accepted).total_seconds() for accepted, finished in rows]
    with _history_lock:
        _history_cache[key] = (now, durations)
    return durations


def _schedule(op: Operation, *, polls: int, elapsed: float) -> float:
    return poll_delay(polls=polls, elapsed=elapsed, history=plan_history(op.instance.plan_id, op.type),
                      jitter=operation_jitter(str(op.pk)))


def _decide(op: Operation, client: OSBClient) -> Decision:
    if op.type == OpType.REFRESH:
        return _refresh(op, client)
    if op.phase == Phase.WAIT:
        return _wait_for_bindings(op, client)
    if op.phase == Phase.SUBMIT:
        if op.type == OpType.ORPHAN_MITIGATION:
            return _submit_cleanup(op, client)
        return _submit(op, client)
    if op.phase == Phase.POLL:
        return _poll(op, client)
    return _fetch(op, client)


# --- submit ----------------------------------------------------------------------------------------


def _wait_for_bindings(op: Operation, client: OSBClient) -> Decision:
    """A cascading deprovision: send the delete once every binding of the instance is gone."""
    from instances.models import ServiceBinding

    # Busy first, then the bindings: an unbind that finishes in between has deleted its binding by the second read
    # (the same transaction ends both), so a binding seen without an active operation really is stuck.
    busy = set(Operation.objects.filter(instance=op.instance, binding__isnull=False, state__in=ACTIVE)
               .values_list("binding_id", flat=True))
    bindings = list(ServiceBinding.objects.visible().filter(instance=op.instance))
    if not bindings:
        op.phase = Phase.SUBMIT
        return _submit(op, client)
    stuck = [b for b in bindings if b.pk not in busy]
    if stuck:
        names = ", ".join(b.name for b in stuck)
        decision = _failure(op, f"Could not unbind {names}, so the instance was not deleted.")
        decision.instance["state"] = InstanceState.READY
        decision.next_step = "Unbind the remaining bindings (or fix them), then deprovision again."
        return decision
    delay = 2.0
    return Decision(delay=delay, next_step=f"Waiting for {len(bindings)} binding(s) to be unbound; "
                                            f"checking again in {describe_wait(delay)}.")


def _send(op: Operation, client: OSBClient) -> Any:
    """Send the operation's stored request, exactly as stored, on behalf of whoever asked for it."""
    return client.send(op.osb_request, identity=originating_identity(op.identity))


def _submit(op: Operation, client: OSBClient) -> Decision:
    kind = op.type
    try:
        response = _send(op, client)
    except OSBGone:
        if kind in DELETES:
            return _success(op, description="The broker no longer had it.")
        return _failure(op, "The broker answered 410 Gone.")
    except OSBConcurrencyError as exc:
        return _retry(op, "The broker is busy with another operation on this instance", retry_after=exc.retry_after)
    except OSBAsyncRequired as exc:
        return _failure(op, f"The broker insists on asynchronous operation although the portal allows it: {exc}",
                        source=exc)
    except OSBMaintenanceInfoConflict as exc:
        broker_request_sync(broker=op.instance.broker)
        return _failure(
            op, f"The plan's maintenance version changed at the broker ({exc.description or exc}). The catalog is "
            "being refreshed; try again once it shows the new version.", source=exc,
        )
    except OSBTimeout as exc:
        return _failure(op, str(exc), orphan=kind in CREATES)
    except OSBConnectionError as exc:
        if exc.maybe_delivered:  # the broker may have acted on it: as a timeout
            return _failure(op, str(exc), orphan=kind in CREATES)
        return _retry(op, f"Could not reach the broker ({exc})")
    except OSBMalformedResponse as exc:
        # 200 with a bad body: failure, no cleanup; 201/202 malformed or another 2xx: cleanup (spec table).
        # A delete has no valid 201: that is "another 2xx" too.
        orphan = kind in CREATES and exc.status != 200
        orphan = orphan or (kind in DELETES and exc.status not in (200, 202))
        return _failure(op, str(exc), orphan=orphan)
    except OSBServerError as exc:
        return _failure(op, str(exc), orphan=kind in (*CREATES, *DELETES), source=exc)
    except OSBError as exc:
        if not exc.permanent and exc.status not in (408,):
            return _retry(op, str(exc), retry_after=exc.retry_after)
        return _failure(op, str(exc), source=exc)
    if response.async_:
        return _accepted(op, response)
    if kind == OpType.BIND:
        return _success(op, secrets=_binding_secrets(response), metadata=response.metadata)
    if kind == OpType.PROVISION:
        return _after_success(op, dashboard_url=getattr(response, "dashboard_url", None),
                              metadata=getattr(response, "metadata", None))
    if kind == OpType.UPDATE:
        return _success(op, dashboard_url=getattr(response, "dashboard_url", None),
                        metadata=getattr(response, "metadata", None))
    return _success(op)


def _binding_secrets(response: Any) -> dict[str, Any]:
    """What a bind or fetch returned that must be kept encrypted (credentials and their companions)."""
    values = {
        "credentials": response.credentials or {},
        "syslog_drain_url": response.syslog_drain_url,
        "route_service_url": response.route_service_url,
        "volume_mounts": response.volume_mounts or [],
        "endpoints": response.endpoints or [],
    }
    return {key: value for key, value in values.items() if value not in (None, [], {})} or {"credentials": {}}


def _submit_cleanup(op: Operation, client: OSBClient) -> Decision:
    """Orphan mitigation: delete at the broker, and keep trying until it says the resource is gone."""
    try:
        response = _send(op, client)
    except OSBGone:
        return _success(op, description=f"The broker confirmed the {_target(op)} is gone.")
    except OSBError as exc:
        return _retry(op, f"The cleanup was not accepted ({exc})", retry_after=exc.retry_after)
    if response.async_:
        return _accepted(op, response)
    return _success(op)


def _target(op: Operation) -> str:
    return "binding" if op.binding_id else "instance"


def _accepted(op: Operation, response: Any) -> Decision:
    delay = _schedule(op, polls=0, elapsed=0)
    decision = Decision(
        phase=Phase.POLL, delay=delay, broker_operation=response.operation, accepted=True, attempt=True,
        description="The broker accepted the request and is working on it.",
        next_step=f"The broker is working on it; checking again in {describe_wait(delay)}.",
    )
    dashboard = getattr(response, "dashboard_url", None)
    if dashboard:
        decision.instance["dashboard_url"] = dashboard
    return decision


def _refresh(op: Operation, client: OSBClient) -> Decision:
    """A drift check: fetch the instance and compare it with the portal's record (services/drift.py). A check that
    cannot get an answer is not retried: the portal's record stays, the next check asks again."""
    from instances.services.drift import binding_differences, differences

    target = "binding" if op.binding_id else "instance"
    try:
        info = _send(op, client)
    except OSBError as exc:
        decision = Decision(state=OpState.FAILED, error=f"The broker could not be asked: {exc}",
                            next_step="Nothing changed in the portal; the next check asks again.")
        getattr(decision, target)["drift_error"] = decision.error
        return decision
    found = binding_differences(op.binding, info) if op.binding_id else differences(op.instance, info)
    decision = Decision(state=OpState.SUCCEEDED, next_step="",
                        description=(f"The broker holds other values for: {', '.join(d['field'] for d in found)}."
                                     if found else "The broker holds what the portal holds."))
    getattr(decision, target)["drift"] = found
    return decision


# --- poll ------------------------------------------------------------------------------------------


def _poll(op: Operation, client: OSBClient) -> Decision:
    deleting = op.type in (*DELETES, OpType.ORPHAN_MITIGATION)
    try:
        last = client.send(op.osb_request.last_operation(op.broker_operation))
    except OSBGone:
        if deleting:
            return _success(op, description=f"The broker confirmed the {_target(op)} is gone.", poll=True)
        return _keep_polling(op, None, note="The broker answered 410 Gone while creating or updating; still waiting")
    except OSBError as exc:
        return _keep_polling(op, exc.retry_after, note=f"The broker's answer could not be used ({exc})")
    if last.state == "in progress":
        return _keep_polling(op, last.retry_after, description=last.description)
    if last.state == "succeeded":
        if op.type == OpType.PROVISION:
            return _after_success(op, description=last.description, poll=True)
        if op.type == OpType.BIND:  # a 202 never carries credentials: fetch the binding
            return Decision(phase=Phase.FETCH, delay=0, description=last.description, poll=True,
                            next_step="Fetching the binding's credentials from the broker.")
        return _success(op, description=last.description, poll=True)
    # failed
    if op.type == OpType.ORPHAN_MITIGATION:
        return _retry(op, f"The broker could not delete it ({last.description or 'no reason given'})",
                      phase=Phase.SUBMIT, poll=True)
    decision = _failure(op, last.description or "The broker reported that the operation failed.",
                        orphan=op.type in (*CREATES, *DELETES))
    decision.poll = True
    decision.description = last.description or ""
    decision.instance_usable = last.instance_usable
    decision.update_repeatable = last.update_repeatable
    if op.type == OpType.UPDATE:
        decision.instance["state"] = _state_after_failure(op, last.instance_usable)
        return _check_after_failed_update(op, decision)
    return decision


def _check_after_failed_update(op: Operation, failed: Decision) -> Decision:
    """An update the broker reported failed (or did not finish in time) may still have changed the instance: ask
    the broker what it holds when the offering is instances_retrievable (the FETCH step records it); otherwise
    say that the outcome is unknown, rather than that the instance kept its previous settings."""
    if op.instance.plan.offering.instances_retrievable:
        return Decision(
            phase=Phase.FETCH, delay=0, poll=failed.poll, error=failed.error, description=failed.description,
            instance_usable=failed.instance_usable, update_repeatable=failed.update_repeatable,
            next_step="The update failed; asking the broker which plan and parameters the instance has now.",
        )
    failed.next_step = _unknown_update_outcome(failed.instance_usable, failed.update_repeatable)
    return failed


def _unknown_update_outcome(instance_usable: bool | None, update_repeatable: bool | None, why: str = "") -> str:
    if instance_usable is False:
        return _after_failed_update(instance_usable, update_repeatable)
    why = why or "this broker does not let the portal fetch an instance"
    sentence = ("The outcome is unknown: the broker may have applied some or all of the change before it failed, "
                f"and {why}. The page shows the settings from before the update.")
    if update_repeatable is False:
        return sentence + " The broker says this change would fail again."
    return sentence + " You can try the change again."


def _after_failed_update(instance_usable: bool | None, update_repeatable: bool | None) -> str:
    if instance_usable is False:
        return "The broker says the instance is no longer usable. Deprovision it, or ask its owner for help."
    if update_repeatable is False:
        return "The instance keeps its previous settings. The broker says this change would fail again."
    return "The instance keeps its previous settings. You can try the change again."


def _keep_polling(op: Operation, retry_after: float | None, *, description: str | None = None,
                  note: str | None = None) -> Decision:
    now = timezone.now()
    if op.deadline and now >= op.deadline:
        return _deadline_passed(op, description)
    elapsed = (now - (op.accepted_at or op.started_at)).total_seconds()
    if retry_after is not None:
        delay = max(retry_after, MIN_RETRY_AFTER)
        sentence = f"The broker asked us to wait {describe_wait(delay)}."
    else:
        delay = _schedule(op, polls=op.polls + 1, elapsed=elapsed)
        sentence = f"Checking again in {describe_wait(delay)}."
    if op.deadline:
        delay = min(delay, max((op.deadline - now).total_seconds(), 0.0))
    if note:
        sentence = f"{note}; checking again in {describe_wait(delay)}."
    return Decision(delay=delay, description=description, next_step=sentence, poll=True)


def _deadline_passed(op: Operation, description: str | None) -> Decision:
    if op.type == OpType.ORPHAN_MITIGATION:
        # The spec: keep trying until the broker confirms. Ask again (the delete is idempotent), after a backoff.
        decision = _retry(op, "The broker did not finish deleting within the maximum polling duration",
                          phase=Phase.SUBMIT, poll=True)
        if description:
            decision.description = description
        return decision
    limit = describe_wait((op.deadline - (op.accepted_at or op.started_at)).total_seconds()) if op.deadline else ""
    decision = _failure(op, f"The broker did not finish within the maximum polling duration ({limit}).",
                        orphan=op.type in CREATES)
    decision.poll = True
    if description:
        decision.description = description
    if op.type == OpType.UNBIND:
        # The broker may have deleted it meanwhile: not "Ready", and its credentials are no longer shown.
        decision.binding["state"] = BindingState.UNKNOWN
        decision.next_step = ("The outcome is unknown: the broker may have deleted this binding, so it is no longer "
                              "offered as ready and its credentials are not shown. Unbind it again to settle it.")
    if op.type == OpType.UPDATE:
        return _check_after_failed_update(op, decision)
    return decision


# --- fetch -----------------------------------------------------------------------------------------


def _fetch(op: Operation, client: OSBClient) -> Decision:
    request = op.osb_request
    if isinstance(request, BindRequest):
        return _fetch_binding(op, request, client)
    if isinstance(request, UpdateRequest):
        return _fetch_after_failed_update(op, request, client)
    if not isinstance(request, ProvisionRequest):
        raise TypeError(f"Nothing to fetch after a {request.kind} request")
    try:
        info = client.send(request.fetch())
    except OSBError as exc:
        return _success(op, description=f"Ready. (The instance's details could not be fetched: {exc})")
    return _success(op, dashboard_url=info.dashboard_url, metadata=info.metadata)


FETCH_ATTEMPTS = 5


def _fetch_after_failed_update(op: Operation, request: UpdateRequest, client: OSBClient) -> Decision:
    """The update failed (its message is on the operation): record what the broker holds now."""
    decision = _failure(op, op.error or "The broker reported that the update failed.")
    decision.attempt = False
    decision.instance["state"] = _state_after_failure(op, op.instance_usable)
    try:
        info = client.send(request.fetch())
    except OSBError as exc:
        decision.next_step = _unknown_update_outcome(
            op.instance_usable, op.update_repeatable, why=f"fetching the instance from the broker failed ({exc})")
        return decision
    decision.instance["held"] = info
    decision.next_step = _held_after_failed_update(op, request, info)
    return decision


def _held_after_failed_update(op: Operation, request: UpdateRequest, info: Any) -> str:
    from brokers.models import ServicePlan

    instance = op.instance
    held_plan = ServicePlan.objects.filter(broker=instance.broker, catalog_id=info.plan_id).first() \
        if info.plan_id else None
    parts = []
    if held_plan is not None and held_plan.pk != instance.plan_id:
        parts.append(f"plan '{held_plan.title}'" + (" (the one asked for)" if info.plan_id == request.plan_id else ""))
    elif request.plan_id and request.plan_id != instance.plan.catalog_id:
        parts.append(f"still plan '{instance.plan.title}'")
    if info.parameters is not None and info.parameters != instance.parameters:
        asked = {**instance.parameters, **(request.parameters or {})}
        parts.append("the new parameters" if info.parameters == asked else "other parameters than before")
    if parts:
        sentence = (f"Checked with the broker after the failure: the instance has {' and '.join(parts)} now; the page "
                    "shows what the broker holds.")
    else:
        sentence = "Checked with the broker after the failure: the instance kept its previous settings."
    if op.instance_usable is False:
        return sentence + " The broker says the instance is no longer usable. Deprovision it, or ask its owner for help."
    if op.update_repeatable is False:
        return sentence + " The broker says this change would fail again."
    return sentence + " You can try the change again."


def _fetch_binding(op: Operation, request: BindRequest, client: OSBClient) -> Decision:
    try:
        info = client.send(request.fetch())
    except OSBError as exc:
        if op.attempts < FETCH_ATTEMPTS and not exc.permanent:
            return _retry(op, f"The binding's credentials could not be fetched ({exc})")
        # The broker made a binding we cannot use: clean it up (an internal error of the platform, per spec).
        return _failure(op, f"The binding succeeded but its credentials could not be fetched ({exc}).",
                        orphan=True)
    return _success(op, secrets=_binding_secrets(info), metadata=info.metadata)


# --- outcomes --------------------------------------------------------------------------------------


def _after_success(op: Operation, *, description: str | None = None, poll: bool = False, **fields: Any) -> Decision:
    if op.instance.plan.offering.instances_retrievable:
        decision = Decision(phase=Phase.FETCH, delay=0, description=description, poll=poll,
                            next_step="Fetching the instance's details from the broker.")
        decision.instance.update({k: v for k, v in fields.items() if v})
        return decision
    return _success(op, description=description, poll=poll, **fields)


def _success(op: Operation, *, description: str | None = None, poll: bool = False, **fields: Any) -> Decision:
    decision = Decision(state=OpState.SUCCEEDED, description=description, poll=poll, attempt=op.phase == Phase.SUBMIT,
                        next_step="Nothing more to do.")
    target = decision.binding if op.binding_id else decision.instance
    target.update({k: v for k, v in fields.items() if v})
    if op.type == OpType.BIND:
        decision.binding["state"] = BindingState.READY
    elif op.type == OpType.UNBIND or (op.binding_id and op.delete_on_success):
        decision.binding["state"] = BindingState.DELETED
    elif op.binding_id:  # cleanup after a failed bind: the binding stays failed, now gone at the broker
        decision.next_step = "Cleaned up at the broker. Delete this binding or create a new one."
    elif op.type == OpType.PROVISION:
        decision.instance["state"] = InstanceState.READY
    elif op.type == OpType.UPDATE:
        decision.instance["state"] = InstanceState.READY
        decision.instance["update"] = op.osb_request
    elif op.type == OpType.DEPROVISION or op.delete_on_success:
        decision.instance["state"] = InstanceState.DELETED
    else:  # cleanup after a failed create: the instance stays failed, now gone at the broker
        decision.next_step = "Cleaned up at the broker. Delete this instance or provision a new one."
    return decision


def _failure(op: Operation, message: str, *, orphan: bool = False, source: OSBError | None = None) -> Decision:
    usable = source.instance_usable if source else None
    decision = Decision(
        state=OpState.FAILED, error=message, attempt=op.phase == Phase.SUBMIT, orphan_mitigation=orphan,
        instance_usable=usable, update_repeatable=source.update_repeatable if source else None,
        description=(source.description if source and source.description else None),
    )
    if op.binding_id:
        # A rejected unbind leaves the binding as it was: usable if it was ever bound, failed otherwise.
        failed_unbind_kept = op.type == OpType.UNBIND and not orphan and _was_bound(op)
        decision.binding["state"] = BindingState.READY if failed_unbind_kept else BindingState.FAILED
    elif op.type == OpType.PROVISION:
        decision.instance["state"] = InstanceState.FAILED
    else:
        decision.instance["state"] = _state_after_failure(op, usable)
    if orphan:
        what = "create" if op.type in CREATES else "delete"
        decision.next_step = f"Cleaning up at the broker after the failed {what}; see the cleanup operation."
        if not op.binding_id:
            decision.instance["state"] = InstanceState.FAILED
    elif op.type == OpType.UPDATE:
        decision.next_step = _after_failed_update(usable, source.update_repeatable if source else None)
    else:
        decision.next_step = ("Nothing more will happen. You can retry, or delete the binding." if op.binding_id
                              else "Nothing more will happen. You can retry, or deprovision the instance.")
    return decision


def _was_bound(op: Operation) -> bool:
    return Operation.objects.filter(binding_id=op.binding_id, type=OpType.BIND, state=OpState.SUCCEEDED).exists()


def _gave_up(op: Operation, reason: str) -> Decision:
    """The deadline passed while the request was being retried. Before the broker accepted it (submission, its
    own deadline OPERATION_SUBMIT_DEADLINE_SECONDS), every answer so far said it did nothing (unreachable without
    delivery, 422 ConcurrencyError, 429): no cleanup is needed."""
    if op.phase == Phase.SUBMIT and op.accepted_at is None:
        limit = describe_wait(float(settings.OPERATION_SUBMIT_DEADLINE_SECONDS))
        message = f"The broker did not accept the request within {limit}, so the portal stopped retrying. The last " \
                  f"attempt: {reason}."
        if broker_may_have_acted(op):  # e.g. an internal error after an answer: the spec's cleanup rules apply
            return _failure(op, message, orphan=op.type in CREATES)
        decision = _failure(op, message)
        decision.next_step = f"{_never_accepted(op)} {decision.next_step}"
        return decision
    return _failure(op, f"{reason}. The portal stopped retrying after the maximum duration.")


def broker_may_have_acted(op: Operation) -> bool:
    """Did any call of `op` reach a broker that may have acted on it? Refusals (4xx such as 422 ConcurrencyError
    or 429) and connections that never opened say no; an answer 2xx or 5xx, or a connection that broke or timed
    out after sending, say maybe."""
    for status, error in op.calls.values_list("status", "error"):
        if status is None:
            if not (error or "").startswith("Could not connect"):
                return True
        elif status < 300 or status >= 500:
            return True
    return False


def _never_accepted(op: Operation) -> str:
    what = {OpType.PROVISION: "Nothing was created at the broker", OpType.BIND: "Nothing was created at the broker",
            OpType.UPDATE: "Nothing was changed at the broker", OpType.DEPROVISION: "Nothing was deleted at the broker",
            OpType.UNBIND: "Nothing was deleted at the broker"}.get(op.type, "The broker did nothing")
    return f"{what}: it never accepted the request."


def _state_after_failure(op: Operation, instance_usable: bool | None) -> str:
    if instance_usable is False:
        return InstanceState.FAILED
    created = Operation.objects.filter(instance=op.instance, type=OpType.PROVISION, state=OpState.SUCCEEDED).exists()
    return InstanceState.READY if created else InstanceState.FAILED


def cleanup_delay(*, attempts: int) -> float:
    """Backoff between attempts of a cleanup at the broker (orphan mitigation), which never gives up by itself:
    ORPHAN_MITIGATION_RETRY_FIRST_SECONDS, doubling up to ORPHAN_MITIGATION_RETRY_MAX_SECONDS."""
    first = float(settings.ORPHAN_MITIGATION_RETRY_FIRST_SECONDS)
    return min(first * 2 ** min(max(attempts - 1, 0), 40), float(settings.ORPHAN_MITIGATION_RETRY_MAX_SECONDS))


def _retry(op: Operation, reason: str, *, retry_after: float | None = None, phase: str | None = None,
           poll: bool = False) -> Decision:
    now = timezone.now()
    attempt = op.attempts + 1
    cleanup = op.type == OpType.ORPHAN_MITIGATION
    if op.deadline and now >= op.deadline and not cleanup:
        decision = _gave_up(op, reason)
        decision.poll = poll
        return decision
    if cleanup:
        delay = max(retry_after or 0.0, cleanup_delay(attempts=attempt))
    else:
        delay = max(retry_after, MIN_RETRY_AFTER) if retry_after is not None else retry_delay(attempts=attempt)
    if cleanup:
        what = "delete" if op.delete_on_success else "create"
        what = f"binding {what}" if op.binding_id else what
        sentence = (f"Cleaning up at the broker after a failed {what}, attempt {attempt}; next attempt in "
                    f"{describe_wait(delay)}.")
    elif retry_after is not None:
        sentence = f"{reason}; the broker asked us to wait {describe_wait(delay)}."
    else:
        sentence = f"{reason}; trying again in {describe_wait(delay)} (attempt {attempt + 1})."
    return Decision(delay=delay, phase=phase or op.phase, next_step=sentence, attempt=True, poll=poll,
                    error=reason)


# --- apply -----------------------------------------------------------------------------------------


def _apply(op: Operation, decision: Decision, calls: list[CallRecord]) -> float | None:
    now = timezone.now()
    fields: dict[str, Any] = {"next_step": decision.next_step, "updated_at": now,
                              "claimed_until": None}
    if decision.phase:
        fields["phase"] = decision.phase
    if decision.description is not None:
        fields["description"] = decision.description
    if decision.error or decision.state != OpState.IN_PROGRESS:
        fields["error"] = decision.error
    if decision.broker_operation is not None:
        fields["broker_operation"] = decision.broker_operation
    if decision.accepted:
        fields["accepted_at"] = now
        fields["deadline"] = now + timedelta(seconds=_max_polling_seconds(op))
        fields["polls"] = 0
    if decision.attempt:
        fields["attempts"] = op.attempts + 1
    if decision.poll:
        fields["polls"] = op.polls + 1
    for name in ("instance_usable", "update_repeatable"):
        if getattr(decision, name) is not None:
            fields[name] = getattr(decision, name)
    if decision.state == OpState.IN_PROGRESS:
        fields["next_poll_at"] = now + timedelta(seconds=max(decision.delay or 0.0, 0.0))
    else:
        fields["next_poll_at"] = None
        fields["finished_at"] = now
    with transaction.atomic():
        OperationCall.objects.bulk_create([_call_row(op, call) for call in calls])
        record(osb_call_rows(broker=op.instance.broker.name, calls=calls))
        if not _transition(op, decision.state, **fields):
            logger.warning("Operation %s: lease lost before the step could be saved", op.pk)
            return None
        _update_instance(op, decision, now)
        _update_binding(op, decision, now)
        if decision.state != OpState.IN_PROGRESS:
            metrics.operation_finished(type=op.type, state=decision.state)
            if op.type == OpType.UPDATE:
                _nudge_upgrade_batches(op)
        if decision.orphan_mitigation:
            _start_cleanup(op, then_delete=op.type in DELETES)
    if decision.state == OpState.IN_PROGRESS:
        return max(decision.delay or 0.0, 0.0)
    return None


def _nudge_upgrade_batches(op: Operation) -> None:
    """An upgrade batch waiting for this update takes its next step once it is written (the sweeper would too)."""
    from instances.models import UpgradeItem
    from instances.tasks import upgrade_batch_advance

    for batch_id in UpgradeItem.objects.filter(operation=op).values_list("batch_id", flat=True):
        enqueue_on_commit(upgrade_batch_advance, str(batch_id))


def _transition(op: Operation, to: str, **fields: Any) -> bool:
    """Move `op` to state `to` if the state machine allows it, by compare-and-set on the state and our lease: a
    worker whose lease expired must not overwrite another's work (False then)."""
    if not can_transition(op.state, to):
        raise InvalidTransition(f"Operation {op.pk}: {op.state} -> {to} is not a transition of the state machine")
    return Operation.objects.filter(pk=op.pk, claimed_until=op.claimed_until, state=op.state).update(
        state=to, **fields) == 1


def _max_polling_seconds(op: Operation) -> float:
    platform = float(settings.OSB_DEFAULT_MAX_POLL_SECONDS)
    plan = op.instance.plan.maximum_polling_duration
    return min(float(plan), platform) if plan else platform


def _update_instance(op: Operation, decision: Decision, now: Any) -> None:
    changes = dict(decision.instance)
    if not changes:
        return
    update = changes.pop("update", None)
    instance_fields: dict[str, Any] = {"updated_at": now}
    if "state" in changes:
        instance_fields["state"] = changes["state"]
        if changes["state"] == InstanceState.DELETED:
            instance_fields["deleted_at"] = now
    if changes.get("dashboard_url"):
        instance_fields["dashboard_url"] = changes["dashboard_url"]
    if changes.get("metadata"):
        instance_fields["metadata"] = changes["metadata"]
    held = changes.pop("held", None)
    if held is not None:  # what the broker holds after a failed update (fetched)
        from brokers.models import ServicePlan

        plan = ServicePlan.objects.filter(broker=op.instance.broker, catalog_id=held.plan_id).first() \
            if held.plan_id else None
        if plan is not None:
            instance_fields["plan"] = plan
        if held.parameters is not None:
            instance_fields["parameters"] = held.parameters
        if held.maintenance_info is not None:
            instance_fields["maintenance_info"] = held.maintenance_info
    if "drift" in changes:  # a drift check answered
        instance_fields.update(drift=changes["drift"], drift_checked_at=now, drift_error="")
    if "drift_error" in changes:
        instance_fields["drift_error"] = changes["drift_error"]
    if isinstance(update, UpdateRequest):
        instance_fields["drift_due_at"] = now  # what the broker holds changed: the periodic check looks again soon
        if update.plan_id is not None:
            from brokers.models import ServicePlan

            instance_fields["plan"] = ServicePlan.objects.get(broker=op.instance.broker, catalog_id=update.plan_id)
        if update.parameters is not None:
            # The broker was sent each changed top-level key whole (parameters_for_update): this is what it holds.
            instance_fields["parameters"] = {**op.instance.parameters, **update.parameters}
        if update.maintenance_version is not None:
            instance_fields["maintenance_info"] = {"version": update.maintenance_version}
    ServiceInstance.objects.filter(pk=op.instance_id).update(**instance_fields)


def _update_binding(op: Operation, decision: Decision, now: Any) -> None:
    from instances.models import ServiceBinding
    from instances.services.kubernetes import publication_requested

    changes = dict(decision.binding)
    if not changes or op.binding is None:
        return
    binding = op.binding
    fields: dict[str, Any] = {"updated_at": now}
    if "secrets" in changes:
        binding.set_secrets(changes["secrets"])
        fields["secrets_encrypted"] = binding.secrets_encrypted
    if changes.get("metadata"):
        fields["metadata"] = changes["metadata"]
    if "drift" in changes:  # a drift check answered
        fields.update(drift=changes["drift"], drift_checked_at=now, drift_error="")
    if "drift_error" in changes:
        fields["drift_error"] = changes["drift_error"]
    state = changes.get("state")
    if state:
        fields["state"] = state
    if state == BindingState.DELETED:
        fields["deleted_at"] = now
    if op.type == OpType.BIND and state == BindingState.READY:
        from instances.services.rotation import hand_over, rotate_at_for

        # The broker's renew_before / expires_at: when the sweeper rotates it (None: never on its own).
        fields["rotate_at"] = rotate_at_for(changes.get("metadata"), now=now)
        if binding.predecessor_id:  # a rotation's successor takes over the name and the Secret
            hand_over(successor_id=binding.pk, predecessor_id=binding.predecessor_id, now=now)
    # A new binding is published; a deleted one has its Secret removed (both by the publishing task).
    publish = (op.type == OpType.BIND and state == BindingState.READY) or state == BindingState.DELETED
    if publish:
        fields.update(publication_requested())
    ServiceBinding.objects.filter(pk=binding.pk).update(**fields)
    if publish:
        transaction.on_commit(lambda: _publish_now(binding.pk))


def _publish_now(binding_id: Any) -> None:
    """Write the Secret right after the bind/unbind commits, in this worker: queued behind other operation
    steps it could wait tens of seconds. If that fails unexpectedly the publishing task is queued, and the
    reconcile covers even a lost message (the publication stays due)."""
    from instances.services.kubernetes import binding_publish
    from instances.tasks import binding_publish as binding_publish_task

    try:
        binding_publish(binding_id=binding_id)
    except Exception:
        logger.warning("Publishing binding %s right away failed; queueing it", binding_id, exc_info=True)
        try:
            binding_publish_task.apply_async(args=(str(binding_id),), retry=False)
        except Exception:
            logger.warning("Could not enqueue the publication of %s; the reconcile will", binding_id)


def _start_cleanup(op: Operation, *, then_delete: bool) -> None:
    """Orphan mitigation: the delete that removes what a failed create or delete may have left at the broker."""
    from instances.tasks import operation_step as operation_step_task

    request = op.osb_request
    if isinstance(request, UpdateRequest):
        raise TypeError("A failed update is never cleaned up (spec: orphan mitigation)")
    now = timezone.now()
    cleanup = Operation.objects.create(
        type=OpType.ORPHAN_MITIGATION, instance=op.instance, binding_id=op.binding_id, parent=op,
        request=request.cleanup().to_json(), delete_on_success=then_delete,
        next_poll_at=now, deadline=now + timedelta(seconds=settings.OSB_DEFAULT_MAX_POLL_SECONDS),
        next_step="Cleaning up at the broker: sending the delete request.",
    )
    enqueue_on_commit(operation_step_task, str(cleanup.pk))


def _call_row(op: Operation, call: CallRecord) -> OperationCall:
    return OperationCall(
        operation=op, method=call.method, path=call.path, status=call.status, duration_ms=call.duration_ms,
        request_id=call.request_id, at=call.at, error=call.error, request_excerpt=call.request_excerpt,
        response_excerpt=call.response_excerpt, retry_after=(call.retry_after or "")[:100], malformed=call.malformed,
        error_code=(call.error_code or "")[:100], error_described=call.error_described,
    )


def overdue() -> Q:
    """Active operations whose message was lost (overdue) or whose worker died (lease expired)."""
    now = timezone.now()
    grace = timedelta(seconds=settings.SWEEP_GRACE_SECONDS)
    return Q(state__in=ACTIVE) & (Q(claimed_until__isnull=True, next_poll_at__lte=now - grace)
                                  | Q(claimed_until__lt=now))


def operations_due(*, limit: int = 1000) -> list[str]:
    """The overdue operations, for the sweeper to dispatch again."""
    due = Operation.objects.filter(overdue())
    return [str(pk) for pk in due.order_by("next_poll_at").values_list("pk", flat=True)[:limit]]


# --- cancelling ------------------------------------------------------------------------------------


def cancel_refusal(op: Operation) -> str | None:
    """Why `op` cannot be cancelled now (whoever asks), or None if it can: see `operation_cancel`."""
    if op.state not in ACTIVE:
        return "This operation has already finished."
    if op.type == OpType.ORPHAN_MITIGATION:
        return None
    if op.phase == Phase.WAIT:
        return "This deprovision is waiting for its bindings to be unbound; it cannot be cancelled."
    if op.phase != Phase.SUBMIT or op.accepted_at is not None or op.broker_operation:
        return ("The broker has accepted this operation, so it can no longer be cancelled: wait for it to finish "
                "(or for its maximum polling duration).")
    if broker_may_have_acted(op):
        return ("The broker may have acted on an earlier attempt, so this operation is not cancelled: the portal "
                "keeps trying until it knows.")
    return None


def operation_cancel(*, operation: Operation, requested_by: Any = None, request: Any = None) -> Operation:
    """Stop an operation; audited.

    * An operation the broker has not accepted yet (still being sent: the broker was unreachable, busy with
      422 ConcurrencyError, or it was never tried): developers of its namespace may cancel it. It fails as if the
      broker had refused it, with nothing to clean up (the broker never acted on it), and the instance or binding
      is released for the next request.
    * A cleanup at the broker (orphan mitigation), which otherwise retries until the broker confirms: platform
      admins only. The broker may still hold what the failed request left; the page says so.

    Conflict once the broker accepted the operation, when it is over, or while a worker is sending it right now.
    """
    from catalog_portal.exceptions import Conflict, Forbidden
    from teams import access
    from teams.audit import audit

    op = Operation.objects.select_related("instance__plan__offering", "instance__broker", "binding").get(
        pk=operation.pk)
    target = op.binding or op.instance
    namespace = op.binding.namespace if op.binding else op.instance.namespace
    cleanup = op.type == OpType.ORPHAN_MITIGATION
    access.require(requested_by, "view", namespace, what=f"{_target(op)} '{target}'")
    if cleanup and requested_by is not None and not access.is_platform_admin(requested_by):
        raise Forbidden("Only a platform admin can stop a cleanup at the broker: the broker may still hold what the "
                        "failed request left, and someone has to check it there.")
    if not cleanup:
        access.require(requested_by, "update", namespace, what=f"{_target(op)} '{target}'")
    refusal = cancel_refusal(op)
    if refusal:
        raise Conflict(refusal)
    who = requested_by.get_username() if getattr(requested_by, "is_authenticated", False) else "the portal"
    if cleanup:
        decision = Decision(
            state=OpState.FAILED, error=f"Cancelled by {who} after {op.attempts} attempt(s).",
            next_step=(f"A platform admin stopped the cleanup: the broker may still hold this {_target(op)}. "
                       "Check the broker, and remove it there if it is still present."),
        )
    else:
        decision = _failure(op, f"Cancelled by {who} before the broker accepted it.")
        decision.next_step = f"{_never_accepted(op)} {decision.next_step}"
    now = timezone.now()
    unclaimed = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    not_accepted = Q() if cleanup else Q(phase=Phase.SUBMIT, accepted_at__isnull=True, broker_operation__isnull=True)
    with transaction.atomic():
        # Compare-and-set: not while a worker holds the lease (it may be sending the request right now), and not
        # once a step moved it on (the broker accepted it, or it finished).
        stopped = Operation.objects.filter(unclaimed, not_accepted, pk=op.pk, state__in=ACTIVE).update(
            state=OpState.FAILED, error=decision.error, next_step=decision.next_step, next_poll_at=None,
            claimed_until=None, finished_at=now, updated_at=now,
        )
        if not stopped:
            raise Conflict("A worker is sending this request to the broker right now, or it has just moved on. "
                           "Look again in a moment.")
        _update_instance(op, decision, now)
        _update_binding(op, decision, now)
        metrics.operation_finished(type=op.type, state=OpState.FAILED)
        audit(action="operation.cancel", target=op, actor=requested_by, request=request,
              summary=f"{op.get_type_display()} of {target} cancelled ({'cleanup' if cleanup else 'not accepted'})"
                      f" after {op.attempts} attempt(s)")
    op.refresh_from_db()
    return op
