"""What the teams app needs to know about instances, answered by the instances app.

Imports flow one way (instances → teams): a team whose namespaces still hold live instances must not be deleted
(nor lose those namespaces), and only the instances app knows them. It registers its answer at start-up
(`instances/apps.py`); until it does (teams used alone), no namespace holds anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

LiveInstances = Callable[[list[str]], list[str]]

_live_instances: LiveInstances | None = None


def register(*, live_instances: LiveInstances) -> None:
    """`live_instances(namespaces)` → the names ("namespace/name") of the instances not deleted in them."""
    global _live_instances
    _live_instances = live_instances


def live_instances(namespaces: Iterable[str]) -> list[str]:
    namespaces = sorted(set(namespaces))
    if not namespaces or _live_instances is None:
        return []
    return _live_instances(namespaces)
