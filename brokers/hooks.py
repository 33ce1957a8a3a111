"""What the brokers app needs to know about instances, answered by the instances app.

Imports flow one way (instances → brokers), yet two broker features need facts that instances own: a catalog
sync's diff says how many existing instances each removed or changed plan affects, and the conformance scorecard
reads the OSB calls the operation engine recorded. The instances app registers its answers at start-up
(`instances/apps.py`); until it does (brokers used alone), there are no instances and no recorded calls.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from brokers.conformance.behaviour import ObservedCall

InstanceCounter = Callable[[Any], dict[Any, int]]
CallSource = Callable[[Any, datetime, int], list[ObservedCall]]

_instance_counter: InstanceCounter | None = None
_call_source: CallSource | None = None


def register(*, instance_counter: InstanceCounter, call_source: CallSource) -> None:
    """`instance_counter(broker_id)` → {plan pk: existing instances}; `call_source(broker_id, since, limit)` →
    the broker's recorded operation calls since then, newest first, at most `limit`."""
    global _instance_counter, _call_source
    _instance_counter, _call_source = instance_counter, call_source


def instance_counts(broker_id: Any) -> dict[Any, int]:
    return _instance_counter(broker_id) if _instance_counter is not None else {}


def recorded_calls(broker_id: Any, *, since: datetime, limit: int) -> list[ObservedCall]:
    return _call_source(broker_id, since, limit) if _call_source is not None else []
