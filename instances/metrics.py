"""Operation and publication metrics: operations by type and state (overdue ones apart), finished operations,
and the time from a successful bind to its Secret being written."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from django.db.models import Count
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from instances.states import ACTIVE, TERMINAL, OpState, OpType
from telemetry.counters import Stored, StoredCounter, StoredHistogram, record

OPERATIONS_FINISHED = StoredCounter("portal_operations_finished", "Operations that reached a terminal state, by "
                                    "type and state.", ("type", "state"))
PUBLICATION_LAG = StoredHistogram(
    "portal_secret_publication_lag_seconds", "Time from a binding's success at the broker to its Secret being "
    "written in the cluster (first publication).", buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
)


def operation_finished(*, type: str, state: str) -> None:
    """Count an operation that reached `state` (inside the transaction of that transition)."""
    record(OPERATIONS_FINISHED.rows(type=type, state=state))


def secret_published(*, binding: Any) -> None:
    """Observe the publication lag of a binding's first Secret (the caller calls it once per binding; repairs are
    not a publication lag)."""
    from instances.models import Operation

    bound_at = (Operation.objects.filter(binding=binding, type=OpType.BIND, state=OpState.SUCCEEDED)
                .order_by("-finished_at").values_list("finished_at", flat=True).first())
    if bound_at is not None:
        record(PUBLICATION_LAG.rows(max((timezone.now() - bound_at).total_seconds(), 0.0)))


def collect(stored: Stored) -> Iterator[Any]:
    """`portal_operations{type, state}`: active ones counted live (through the state index; there are only as
    many as there is work in flight), with those past due (a lost message or a dead worker the sweeper has not
    caught up with) as state "overdue"; finished ones from the stored counter. Plus the stored families."""
    from instances.models import Operation
    from instances.services.operations import overdue

    active = Counter({(row["type"], row["state"]): row["n"] for row in
                      Operation.objects.filter(state__in=ACTIVE).values("type", "state").annotate(n=Count("pk"))})
    late = Counter({(row["type"], row["state"]): row["n"] for row in
                    Operation.objects.filter(overdue()).values("type", "state").annotate(n=Count("pk"))})
    finished = {(labels["type"], labels["state"]): value for labels, value in stored.samples(
        OPERATIONS_FINISHED.name)}
    family = GaugeMetricFamily("portal_operations", "Operations by type and state now; 'overdue' are active "
                               "operations past their due time (not counted as pending or in_progress).",
                               labels=["type", "state"])
    for op_type in OpType.values:
        for state in sorted(ACTIVE):
            family.add_metric([op_type, state], float(active[(op_type, state)] - late[(op_type, state)]))
        family.add_metric([op_type, "overdue"], float(sum(late[(op_type, state)] for state in ACTIVE)))
        for state in sorted(TERMINAL):
            family.add_metric([op_type, state], finished.get((op_type, state), 0.0))
    yield family
    yield OPERATIONS_FINISHED.family(stored)
    yield PUBLICATION_LAG.family(stored)
