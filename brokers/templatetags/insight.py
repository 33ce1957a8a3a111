"""Template helpers of the broker page: a sync's diff and the conformance scorecard, made readable."""

from __future__ import annotations

from typing import Any

from django import template

from brokers.catalog_diff import describe_schema_changes
from brokers.mirror import describe_diff as _describe_diff

register = template.Library()

CHANGES = (("added", "Added", "+"), ("removed", "Removed", "\N{MINUS SIGN}"), ("changed", "Changed", "~"))


@register.filter
def describe_diff(diff: dict[str, Any] | None) -> str:
    return _describe_diff(diff or {})


SHOWN_PER_GROUP = 50  # a first mirror adds thousands: the page shows the first ones, the API has them all


@register.filter
def diff_groups(diff: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The non-empty parts of a diff in reading order: [{"kind", "change", "label", "sign", "entries", "count",
    "more"}], at most SHOWN_PER_GROUP entries each."""
    groups = []
    for change, label, sign in CHANGES:
        for kind, noun in (("services", "Services"), ("plans", "Plans")):
            entries = (diff or {}).get(kind, {}).get(change) or []
            if entries:
                groups.append({"kind": kind, "change": change, "label": f"{label} {noun.lower()}", "sign": sign,
                               "entries": entries[:SHOWN_PER_GROUP], "count": len(entries),
                               "more": max(len(entries) - SHOWN_PER_GROUP, 0)})
    return groups


@register.filter
def schema_lines(schemas: dict[str, dict[str, list[str]]] | None) -> list[str]:
    return describe_schema_changes(schemas)


@register.filter
def score_class(score: int | None) -> str:
    if score is None:
        return "none"
    return "good" if score >= 90 else "fair" if score >= 70 else "poor"


@register.filter
def by_outcome(checks: list[Any]) -> dict[str, list[Any]]:
    """Checks split into failed (errors first), passed and not observed."""
    order = {"error": 0, "warning": 1, "info": 2}
    return {
        "failed": sorted((c for c in checks if c.passed is False), key=lambda c: order[c.level]),
        "passed": [c for c in checks if c.passed is True],
        "unobserved": [c for c in checks if c.passed is None],
    }
