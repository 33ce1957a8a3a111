"""Behaviour checks: what the calls the portal made to a broker say about how it follows the spec.

Input: the calls of the last days (`ObservedCall`: what the OSB client recorded of each exchange, plus the
operation it was made for). A check with no call of the kind it judges is "not observed yet".
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from brokers.conformance import SPEC, Check, CheckResult

WINDOW_DAYS = 7
SLOW_SYNC_MS = 10_000  # a synchronous answer to a change slower than this should have been asynchronous
SLOW_P95_MS = 5_000  # the 95th percentile latency an endpoint should stay under
MAX_SHARE = 0.05  # of 5xx answers, of calls without an answer
ERROR_CODES = ("AsyncRequired", "ConcurrencyError", "RequiresApp", "MaintenanceInfoConflict")
CHANGES = ("provision", "update", "deprovision", "bind", "unbind")
POLLS = ("last_operation", "binding_last_operation")
_KINDS = [
    (re.compile(r"/v2/catalog$"), {"GET": "catalog"}),
    (re.compile(r"/v2/service_instances/[^/]+/service_bindings/[^/]+/last_operation$"),
     {"GET": "binding_last_operation"}),
    (re.compile(r"/v2/service_instances/[^/]+/service_bindings/[^/]+$"),
     {"PUT": "bind", "DELETE": "unbind", "GET": "fetch_binding"}),
    (re.compile(r"/v2/service_instances/[^/]+/last_operation$"), {"GET": "last_operation"}),
    (re.compile(r"/v2/service_instances/[^/]+$"),
     {"PUT": "provision", "PATCH": "update", "DELETE": "deprovision", "GET": "fetch_instance"}),
]


def call_kind(method: str, path: str) -> str:
    """The spec endpoint of a call, from its method and path ("" when it is none of them)."""
    bare = path.split("?", 1)[0]
    for pattern, by_method in _KINDS:
        if pattern.search(bare):
            return by_method.get(method.upper(), "")
    return ""


@dataclass(frozen=True)
class ObservedCall:
    """One recorded OSB exchange (brokers.osb.CallRecord's fields, as stored) and the operation it served."""

    method: str
    path: str
    status: int | None
    duration_ms: int
    at: datetime | None = None
    error: str | None = None
    retry_after: str | None = None
    malformed: bool = False
    error_code: str | None = None
    error_described: bool | None = None
    response_excerpt: str = ""
    operation_id: str | None = None
    operation_type: str = ""  # "" for catalog fetches

    @property
    def kind(self) -> str:
        return call_kind(self.method, self.path)

    @property
    def label(self) -> str:
        answer = f"answered {self.status}" if self.status else "got no answer"
        return f"{self.method} {self.path.split('?', 1)[0]} {answer}"

    @property
    def in_progress(self) -> bool:
        """A 202, or a last_operation answer saying "in progress"."""
        if self.status == 202:
            return True
        return self.kind in POLLS and self.status == 200 and _state(self.response_excerpt) == "in progress"


def _state(excerpt: str) -> str | None:
    try:
        data = json.loads(excerpt)
    except ValueError:
        match = re.search(r'"state":"([^"]*)"', excerpt)
        return match.group(1) if match else None
    return data.get("state") if isinstance(data, dict) else None


def _share(part: int, whole: int) -> str:
    return f"{part} of {whole} call(s) ({100 * part / whole:.1f} %)"


# --- the checks -----------------------------------------------------------------------------------------------


ANSWER_SHAPES = Check(
    "behaviour.answer-shapes", "Answers have the status and body the spec defines", "error",
    SPEC + "Service Broker Errors; the Response section of each endpoint",
    "Where the specification defines the expected response code, that response code MUST be used.",
    "Answer each endpoint only with the statuses its Response table lists, with a JSON object body of the "
    "documented fields and types.",
)
LAST_OPERATION_STATES = Check(
    "behaviour.last-operation-states", "last_operation answers say in progress, succeeded or failed", "error",
    SPEC + "Polling Last Operation for Service Instances > Body",
    "state* | string | Valid values are in progress, succeeded, and failed.",
    "Answer last_operation polls with a JSON object whose 'state' is exactly one of these three strings.",
)
ERROR_CODE_CHECK = Check(
    "behaviour.error-codes", "422 answers name the spec's error code", "error", SPEC + "Service Broker Errors > Error Codes",
    "There are failure scenarios described throughout this specification for which the error field MUST contain "
    "a specific string. Service Broker authors MUST use these error codes for the specified failure scenarios.",
    "Put AsyncRequired, ConcurrencyError, RequiresApp or MaintenanceInfoConflict in the 'error' field of every 422.",
)
ERROR_BODIES = Check(
    "behaviour.error-bodies", "Error answers explain themselves", "warning", SPEC + "Service Broker Errors",
    "description | string | A user-facing error message explaining why the request failed. If present, MUST be a "
    "non-empty string.",
    "Answer errors with a JSON object holding a 'description' the portal can show to the person who asked.",
)
RETRY_AFTER_THROTTLING = Check(
    "behaviour.retry-after-throttling", "429 and 503 answers say when to retry", "warning",
    SPEC + "Service Broker Errors (HTTP semantics: RFC 6585 §4, RFC 9110 §10.2.3)",
    "The response representations SHOULD include details explaining the condition, and MAY include a Retry-After "
    "header indicating how long to wait before making a new request. (RFC 6585, 429 Too Many Requests)",
    "Send a Retry-After header (in seconds) with every 429 and 503 answer.",
)
RETRY_AFTER_POLLING = Check(
    "behaviour.retry-after-polling", "Asynchronous operations say when to poll again", "info",
    SPEC + "Polling Last Operation for Service Instances > Body",
    "The response MAY also include the Retry-After HTTP header. This header will indicate how long the Platform "
    "SHOULD wait before polling again … It is RECOMMENDED that the header include a duration rather than a "
    "timestamp.",
    "Send Retry-After (in seconds) with 202 answers or with 'in progress' last_operation answers.",
)
ASYNC_WHEN_SLOW = Check(
    "behaviour.async-when-slow", "Slow changes are asynchronous", "warning",
    SPEC + "Synchronous and Asynchronous Operations; Orphan Mitigation",
    "Service Brokers that cannot guarantee completion of the operation with the response SHOULD implement the "
    "asynchronous response. … The Service Broker does not return a response before a request from the Platform "
    "times out (typically 60 seconds).",
    "Answer long provisions, updates, bindings and deletions with 202 Accepted and let the portal poll.",
)
SERVER_ERRORS = Check(
    "behaviour.server-errors", f"Fewer than {MAX_SHARE:.0%} of answers are server errors", "warning",
    SPEC + "Service Broker Errors",
    "an HTTP status code in the 5xx range SHOULD result in the Service Broker's resources being semantically "
    "unchanged … it might not be possible for a Service Broker to guarantee that it can revert all possible effects "
    "of a failed attempt",
    "Find what fails in the broker's log (the request identity header names each call); a 5xx to a provision or "
    "bind makes the portal clean up (orphan mitigation).",
)
REACHABLE = Check(
    "behaviour.reachable", f"Fewer than {MAX_SHARE:.0%} of calls go unanswered", "warning",
    SPEC + "Synchronous and Asynchronous Operations",
    "Platforms expect prompt responses to all API requests in order to provide users with fast feedback.",
    "Make the broker reachable from the portal and answer within the portal's timeouts.",
)
LATENCY = Check(
    "behaviour.latency", f"Each endpoint answers in under {SLOW_P95_MS // 1000} s (95th percentile)", "info",
    SPEC + "Synchronous and Asynchronous Operations",
    "Service Broker authors SHOULD implement their Service Brokers to respond promptly to all requests",
    "Speed up the slow endpoints, or answer changes asynchronously.",
)
ORPHAN_MITIGATION = Check(
    "behaviour.orphan-mitigation", "No orphan mitigation was needed", "warning", SPEC + "Orphan Mitigation",
    "To mitigate orphaned Service Instances and Service Bindings, the Platform SHOULD attempt to delete resources it "
    "cannot be sure were successfully created",
    "Answer provisions and bindings with a valid status in time: a 5xx, a timeout, a malformed answer or a failed "
    "asynchronous create makes the portal delete what the broker may have created.",
)
GONE_FOR_DELETES = Check(
    "behaviour.gone-only-for-deletes", "410 Gone only answers deletions", "warning",
    SPEC + "Polling Last Operation for Service Instances > Response",
    "410 Gone | Appropriate only for asynchronous delete operations. … Returning this while the Platform is polling "
    "for create or update operations SHOULD be interpreted as an invalid response",
    "Answer 410 only to a DELETE or to the last_operation poll of a deletion; while creating or updating answer "
    "with the operation's state.",
)
BEHAVIOUR_CHECKS = [ANSWER_SHAPES, LAST_OPERATION_STATES, ERROR_CODE_CHECK, ERROR_BODIES, RETRY_AFTER_THROTTLING,
                    RETRY_AFTER_POLLING, ASYNC_WHEN_SLOW, SERVER_ERRORS, REACHABLE, LATENCY, ORPHAN_MITIGATION,
                    GONE_FOR_DELETES]


def check_behaviour(calls: Iterable[ObservedCall]) -> list[CheckResult]:
    """Every behaviour check on `calls` (any order)."""
    calls = list(calls)
    answered = [c for c in calls if c.status]
    return [
        _answer_shapes(answered), _last_operation_states(answered), _error_codes(answered), _error_bodies(answered),
        _retry_after_throttling(answered), _retry_after_polling(answered), _async_when_slow(calls),
        _server_errors(answered), _reachable(calls), _latency(answered), _orphan_mitigation(calls),
        _gone_for_deletes(answered),
    ]


def _distinct(problems: list[str]) -> list[str]:
    return list(dict.fromkeys(problems))


def _answer_shapes(answered: list[ObservedCall]) -> CheckResult:
    judged = [c for c in answered if not (c.kind in POLLS and c.status == 200)]
    if not judged:
        return ANSWER_SHAPES.not_observed(f"no answer in the last {WINDOW_DAYS} days.")
    bad = [c for c in judged if c.malformed]
    return ANSWER_SHAPES.outcome(_distinct([c.error or c.label for c in bad]),
                                 f"All {len(judged)} answers had the documented shape.")


def _last_operation_states(answered: list[ObservedCall]) -> CheckResult:
    polls = [c for c in answered if c.kind in POLLS and c.status == 200]
    if not polls:
        return LAST_OPERATION_STATES.not_observed(f"no last_operation answer in the last {WINDOW_DAYS} days.")
    bad = [c.error or c.label for c in polls if c.malformed]
    return LAST_OPERATION_STATES.outcome(_distinct(bad), f"All {len(polls)} last_operation answers had a valid state.")


def _error_codes(answered: list[ObservedCall]) -> CheckResult:
    unprocessable = [c for c in answered if c.status == 422]
    if not unprocessable:
        return ERROR_CODE_CHECK.not_observed(f"no 422 answer in the last {WINDOW_DAYS} days.")
    bad = [f"{c.label} with error {c.error_code!r}" for c in unprocessable if c.error_code not in ERROR_CODES]
    return ERROR_CODE_CHECK.outcome(_distinct(bad), f"All {len(unprocessable)} 422 answers named their error code.")


def _error_bodies(answered: list[ObservedCall]) -> CheckResult:
    errors = [c for c in answered if c.status and c.status >= 400]
    if not errors:
        return ERROR_BODIES.not_observed(f"no error answer in the last {WINDOW_DAYS} days.")
    bad = [f"{c.label} without a JSON description" for c in errors if not c.error_described]
    return ERROR_BODIES.outcome(_distinct(bad), f"All {len(errors)} error answers carried a description.")


def _retry_after_throttling(answered: list[ObservedCall]) -> CheckResult:
    throttled = [c for c in answered if c.status in (429, 503)]
    if not throttled:
        return RETRY_AFTER_THROTTLING.not_observed(f"no 429 or 503 answer in the last {WINDOW_DAYS} days.")
    bad = [f"{c.label} without Retry-After" for c in throttled if not c.retry_after]
    return RETRY_AFTER_THROTTLING.outcome(_distinct(bad), f"All {len(throttled)} 429/503 answers had Retry-After.")


def _retry_after_polling(answered: list[ObservedCall]) -> CheckResult:
    """Judges the operations the portal had to poll more than once (an "in progress" poll): did their 202 or one of
    those answers say when to poll again? An operation done at the first poll needed no hint."""
    by_operation: dict[str, list[ObservedCall]] = defaultdict(list)
    for call in answered:
        if call.operation_id and call.in_progress:
            by_operation[call.operation_id].append(call)
    by_operation = {op: calls for op, calls in by_operation.items() if any(c.kind in POLLS for c in calls)}
    if not by_operation:
        return RETRY_AFTER_POLLING.not_observed(f"no asynchronous operation in the last {WINDOW_DAYS} days.")
    silent = [calls for calls in by_operation.values() if not any(c.retry_after for c in calls)]
    bad = [f"an asynchronous {calls[0].operation_type or 'operation'} ({calls[0].label}) never sent Retry-After"
           for calls in silent]
    return RETRY_AFTER_POLLING.failed(bad) if bad else RETRY_AFTER_POLLING.passed(
        f"All {len(by_operation)} asynchronous operations said when to poll again.")


def _async_when_slow(calls: list[ObservedCall]) -> CheckResult:
    changes = [c for c in calls if c.kind in CHANGES]
    if not changes:
        return ASYNC_WHEN_SLOW.not_observed(f"no provision, update, bind or deletion in the last {WINDOW_DAYS} days.")
    bad = [f"{c.label} after {c.duration_ms / 1000:.1f} s" for c in changes
           if c.status in (200, 201) and c.duration_ms > SLOW_SYNC_MS]
    bad += [f"{c.method} {c.path.split('?', 1)[0]} timed out ({c.error})" for c in changes
            if not c.status and c.error and "did not answer within" in c.error]
    return ASYNC_WHEN_SLOW.outcome(
        bad, f"All {len(changes)} changes were asynchronous or answered within {SLOW_SYNC_MS // 1000} s.")


def _server_errors(answered: list[ObservedCall]) -> CheckResult:
    if not answered:
        return SERVER_ERRORS.not_observed(f"no answer in the last {WINDOW_DAYS} days.")
    failed = [c for c in answered if c.status and c.status >= 500]
    if len(failed) > MAX_SHARE * len(answered):
        examples = _distinct([c.label for c in failed])
        return SERVER_ERRORS.failed([f"{_share(len(failed), len(answered))} answered 5xx", *examples])
    return SERVER_ERRORS.passed(f"{_share(len(failed), len(answered))} answered 5xx.")


def _reachable(calls: list[ObservedCall]) -> CheckResult:
    if not calls:
        return REACHABLE.not_observed(f"no call in the last {WINDOW_DAYS} days.")
    unanswered = [c for c in calls if not c.status]
    if len(unanswered) > MAX_SHARE * len(calls):
        examples = _distinct([c.error or c.label for c in unanswered])
        return REACHABLE.failed([f"{_share(len(unanswered), len(calls))} got no answer", *examples])
    return REACHABLE.passed(f"{_share(len(unanswered), len(calls))} got no answer.")


def p95(values: list[int]) -> int:
    ordered = sorted(values)
    return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]


def _latency(answered: list[ObservedCall]) -> CheckResult:
    by_kind: dict[str, list[int]] = defaultdict(list)
    for call in answered:
        if call.kind:
            by_kind[call.kind].append(call.duration_ms)
    if not by_kind:
        return LATENCY.not_observed(f"no answer in the last {WINDOW_DAYS} days.")
    figures = {kind: p95(values) for kind, values in sorted(by_kind.items())}
    listed = ", ".join(f"{kind} {ms} ms" for kind, ms in figures.items())
    slow = [f"{kind}: 95 % of answers within {ms / 1000:.1f} s" for kind, ms in figures.items() if ms > SLOW_P95_MS]
    return LATENCY.failed(slow) if slow else LATENCY.passed(f"95th percentile: {listed}.")


def _orphan_mitigation(calls: list[ObservedCall]) -> CheckResult:
    creates = [c for c in calls if c.kind in ("provision", "bind")]
    if not creates:
        return ORPHAN_MITIGATION.not_observed(f"no provision or bind in the last {WINDOW_DAYS} days.")
    cleanups: dict[str, ObservedCall] = {}
    for call in calls:
        if call.operation_type == "orphan_mitigation" and call.operation_id:
            cleanups.setdefault(call.operation_id, call)
    bad = [f"cleanup {call.label}" for call in cleanups.values()]
    if bad:
        return ORPHAN_MITIGATION.failed([f"{len(cleanups)} orphan mitigation(s) after {len(creates)} create call(s)",
                                         *bad])
    return ORPHAN_MITIGATION.passed(f"None after {len(creates)} provision and bind call(s).")


def _gone_for_deletes(answered: list[ObservedCall]) -> CheckResult:
    gone = [c for c in answered if c.status == 410]
    if not gone:
        return GONE_FOR_DELETES.not_observed(f"no 410 answer in the last {WINDOW_DAYS} days.")
    deletes = ("deprovision", "unbind", "orphan_mitigation")
    bad = [f"{c.label} while {c.operation_type or 'not deleting'}" for c in gone
           if not (c.method == "DELETE" or (c.kind in POLLS and c.operation_type in deletes))]
    return GONE_FOR_DELETES.outcome(_distinct(bad), f"All {len(gone)} 410 answers were to deletions.")


def observed_from_json(record: dict[str, Any], **extra: Any) -> ObservedCall:
    """An ObservedCall from a call stored as JSON (brokers.services.call_record_json)."""
    return ObservedCall(
        method=record.get("method", ""), path=record.get("path", ""), status=record.get("status"),
        duration_ms=record.get("duration_ms") or 0, error=record.get("error"),
        retry_after=record.get("retry_after"), malformed=bool(record.get("malformed")),
        error_code=record.get("error_code"), error_described=record.get("error_described"),
        response_excerpt=record.get("response") or "", **extra,
    )
