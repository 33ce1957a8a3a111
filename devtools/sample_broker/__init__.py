"""A stdlib-only Open Service Broker API v2.17 broker.

* ``python -m devtools.sample_broker`` runs the demo broker with a realistic catalog.
* ``SampleBroker`` is the same server, scriptable, for the portal's tests.
* ``generate_catalog`` builds big deterministic catalogs for benchmarks.

This package must not import Django.
"""

from __future__ import annotations

from .catalog import build_catalog, find_plan, plan_id
from .generate import generate_catalog
from .server import Headers, RecordedRequest, SampleBroker

__all__ = [
    "Headers",
    "RecordedRequest",
    "SampleBroker",
    "build_catalog",
    "find_plan",
    "generate_catalog",
    "plan_id",
]
