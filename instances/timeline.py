"""The instance page's Activity, readable however long an operation polled: repeated polls become one row.

Pure functions over an operation's recorded calls (no queries): the view passes the prefetched calls.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from instances.states import OpType

# What people read instead of the engine's names.
TITLES = {
    OpType.PROVISION: "Provisioning",
    OpType.UPDATE: "Update",
    OpType.DEPROVISION: "Deprovisioning",
    OpType.BIND: "Binding",
    OpType.UNBIND: "Unbinding",
    OpType.ORPHAN_MITIGATION: "Cleaning up at the broker",
    OpType.REFRESH: "Checked at the broker",
}


def title(op_type: str) -> str:
    return TITLES.get(op_type, str(op_type).replace("_", " ").capitalize())


def answered_state(call: Any) -> str:
    """The `state` a last_operation answer carried ("in progress", "succeeded", "failed"), else ""."""
    if "last_operation" not in call.path or not call.response_excerpt:
        return ""
    try:
        body = json.loads(call.response_excerpt)
    except ValueError:
        return ""
    state = body.get("state") if isinstance(body, dict) else None
    return state if isinstance(state, str) else ""


@dataclass
class CallGroup:
    """One call, or a run of consecutive identical ones (same method, path, status and answered state)."""

    calls: list[Any] = field(default_factory=list)
    state: str = ""

    @property
    def first(self) -> Any:
        return self.calls[0]

    @property
    def last(self) -> Any:
        return self.calls[-1]

    @property
    def count(self) -> int:
        return len(self.calls)

    @property
    def repeated(self) -> bool:
        return len(self.calls) > 1

    @property
    def started(self) -> datetime:
        return self.first.at

    @property
    def ended(self) -> datetime:
        return self.last.at

    @property
    def duration_text(self) -> str:
        durations = [c.duration_ms for c in self.calls]
        if not self.repeated:
            return f"{durations[0]} ms"
        low, high = min(durations), max(durations)
        return f"{low} ms" if low == high else f"{low}–{high} ms"


def group_calls(calls: list[Any]) -> list[CallGroup]:
    """Consecutive calls that differ only in time (the polls of a long operation) as one group each; a failure
    or anything else that differs starts a new group, so nothing unusual is hidden in a count."""
    groups: list[CallGroup] = []
    for call in calls:
        state = answered_state(call)
        previous = groups[-1] if groups else None
        if (previous is not None and not call.is_failure and not previous.last.is_failure
                and (call.method, call.path, call.status, state)
                == (previous.last.method, previous.last.path, previous.last.status, previous.state)):
            previous.calls.append(call)
        else:
            groups.append(CallGroup(calls=[call], state=state))
    return groups
