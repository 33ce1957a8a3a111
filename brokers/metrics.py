"""Broker metrics: every OSB call (counted where it is recorded), catalog syncs, and whether each broker is up."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily

from brokers.conformance.behaviour import call_kind
from brokers.osb import CallRecord
from telemetry.counters import Row, Stored, StoredCounter, StoredHistogram, record

OSB_REQUESTS = StoredCounter("portal_osb_requests", "OSB requests the portal sent, by broker, endpoint and "
                             "answer (an HTTP status, or 'error' when no answer came).",
                             ("broker", "endpoint", "status"))
OSB_DURATION = StoredHistogram("portal_osb_request_duration_seconds", "How long brokers took to answer OSB "
                               "requests.", ("broker", "endpoint"))
CATALOG_SYNC_DURATION = StoredHistogram("portal_catalog_sync_duration_seconds", "How long a catalog sync took "
                                        "(fetch, validation and mirror).", ("broker",))
CATALOG_SYNCS = StoredCounter("portal_catalog_syncs", "Catalog syncs by outcome (changed, unchanged, failed).",
                              ("broker", "outcome"))


def osb_call_rows(*, broker: str, calls: Iterable[CallRecord | dict[str, Any]]) -> list[Row]:
    """Counter rows for OSB calls (a CallRecord, or the dict a catalog sync keeps of one)."""
    rows: list[Row] = []
    for call in calls:
        method, path, status, duration_ms = (
            (call["method"], call["path"], call["status"], call["duration_ms"]) if isinstance(call, dict)
            else (call.method, call.path, call.status, call.duration_ms))
        endpoint = call_kind(method, path) or "other"  # the spec's endpoint names: a bounded label, never ids
        rows += OSB_REQUESTS.rows(broker=broker, endpoint=endpoint, status=str(status) if status else "error")
        rows += OSB_DURATION.rows(duration_ms / 1000, broker=broker, endpoint=endpoint)
    return rows


def catalog_sync_observed(*, broker: str, sync: Any) -> None:
    """Count a finished catalog sync and its OSB calls (inside the transaction that saves the sync)."""
    record([
        *osb_call_rows(broker=broker, calls=sync.calls),
        *CATALOG_SYNC_DURATION.rows((sync.duration_ms or 0) / 1000, broker=broker),
        *CATALOG_SYNCS.rows(broker=broker, outcome=sync.outcome),
    ])


def collect(stored: Stored) -> Iterator[Any]:
    """The broker families for /metrics: the stored counters, and `portal_broker_up` from one query over the
    brokers (a broker is up when its last catalog fetch succeeded)."""
    from brokers.models import Broker

    yield OSB_REQUESTS.family(stored)
    yield OSB_DURATION.family(stored)
    yield CATALOG_SYNC_DURATION.family(stored)
    yield CATALOG_SYNCS.family(stored)
    up = GaugeMetricFamily("portal_broker_up", "1 when the broker's last catalog fetch succeeded, 0 when it "
                           "failed or none finished yet.", labels=["broker"])
    for name, status, message, synced in Broker.objects.values_list("name", "status", "status_message",
                                                                    "last_synced_at"):
        ok = status == Broker.Status.READY or (status == Broker.Status.SYNCING and synced and not message)
        up.add_metric([name], 1.0 if ok else 0.0)
    yield up
