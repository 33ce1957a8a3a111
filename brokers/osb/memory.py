"""Pausing Python's cyclic garbage collector around work that builds a large object graph at once.

Decoding, validating and mirroring a big catalog (1,000 services, 9.5 MB of JSON) allocates millions of containers:
each full collection the allocations trigger walks all of them, and never finds garbage (the graph is acyclic and
freed by reference counting). Measured on a cold mirror of that catalog: about a second of its three
(docs/benchmarks.md). The pause is process-wide and nests across threads: the collector runs again when the last
paused block ends, if it was on when the first began. Keep the blocks short and CPU-bound (never around a network
wait): other threads' cyclic garbage waits for the collector meanwhile.

Here, in the OSB library (standard library only), because the client decodes the catalog under it; the catalog
mirror (brokers/services.py) uses it too.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
