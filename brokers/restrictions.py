"""Catalog restrictions: which of a broker's services and plans the platform offers (pure functions, no database).

Kubernetes Service Catalog's `catalogRestrictions`, with the same rule language. A rule is

    PROPERTY == VALUE    PROPERTY != VALUE    PROPERTY in (A, B, ...)    PROPERTY notin (A, B, ...)

where PROPERTY is `name` or `catalog_id` (services and plans) or `free` (plans; VALUE `true` or `false`).
A service is offered when it satisfies every service rule and at least one of its plans is offered; a plan is
offered when its service satisfies the service rules and the plan satisfies every plan rule. What is not offered
is still mirrored, inactive (brokers.mirror), so existing instances keep working.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KINDS = {"services": "Service", "plans": "Plan"}
PROPERTIES = {"services": ("name", "catalog_id"), "plans": ("name", "catalog_id", "free")}
MAX_RULES = 50
MAX_RULE_LENGTH = 1000
_EQUALITY = re.compile(r"^(?P<prop>[A-Za-z_]+)\s*(?P<op>==|!=)\s*(?P<value>.*)$", re.S)
_SET = re.compile(r"^(?P<prop>[A-Za-z_]+)\s+(?P<op>in|notin)\s*\((?P<values>.*)\)$", re.S)
EXAMPLES = "e.g. name==small, free!=false, catalog_id in (a1, b2) or name notin (legacy)"


class RestrictionError(ValueError):
    """Bad rules; `messages` names each one and what is wrong with it."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__(" ".join(messages))
        self.messages = messages


@dataclass(frozen=True)
class Rule:
    text: str  # as written, normalised (one space around in/notin, none around == and !=)
    prop: str
    op: str  # "==", "!=", "in", "notin"
    values: frozenset[str]

    def allows(self, item: Mapping[str, Any]) -> bool:
        value = item.get(self.prop)
        if isinstance(value, bool):
            value = "true" if value else "false"
        inside = value in self.values
        return inside if self.op in ("==", "in") else not inside


@dataclass(frozen=True)
class Restrictions:
    services: tuple[Rule, ...] = ()
    plans: tuple[Rule, ...] = ()

    def allows_service(self, item: Mapping[str, Any]) -> bool:
        """`item`: {"name", "catalog_id"}."""
        return all(rule.allows(item) for rule in self.services)

    def allows_plan(self, item: Mapping[str, Any]) -> bool:
        """`item`: {"name", "catalog_id", "free"}."""
        return all(rule.allows(item) for rule in self.plans)

    def as_json(self) -> dict[str, list[str]]:
        return {"services": [rule.text for rule in self.services], "plans": [rule.text for rule in self.plans]}

    def __bool__(self) -> bool:
        return bool(self.services or self.plans)


def parse_restrictions(value: Any) -> Restrictions:
    """`{"services": [rule, ...], "plans": [rule, ...]}` (either key may be missing; None = no restriction),
    parsed; raises RestrictionError naming every bad rule."""
    if value is None:
        return Restrictions()
    if not isinstance(value, Mapping):
        raise RestrictionError(['Catalog restrictions must be an object: {"services": [rules], "plans": [rules]}.'])
    messages = [f"Unknown key '{key}': use 'services' and 'plans'." for key in value if key not in KINDS]
    parsed: dict[str, tuple[Rule, ...]] = {}
    for kind in KINDS:
        rules = value.get(kind) or []
        if not isinstance(rules, list) or not all(isinstance(rule, str) for rule in rules):
            messages.append(f"'{kind}' must be a list of rules (strings).")
            continue
        if len(rules) > MAX_RULES:
            messages.append(f"At most {MAX_RULES} {kind} rules.")
            continue
        good: list[Rule] = []
        for index, text in enumerate(rules):
            try:
                good.append(parse_rule(kind, text))
            except RestrictionError as exc:
                messages.append(f"{KINDS[kind]} rule {index + 1} “{text.strip()[:100]}”: {exc.messages[0]}")
        parsed[kind] = tuple(good)
    if messages:
        raise RestrictionError(messages)
    return Restrictions(services=parsed["services"], plans=parsed["plans"])


def parse_rule(kind: str, text: str) -> Rule:
    """One rule of `kind` ("services" or "plans"); raises RestrictionError with one message."""
    rule = text.strip()
    if not rule:
        raise RestrictionError(["the rule is empty."])
    if len(rule) > MAX_RULE_LENGTH:
        raise RestrictionError([f"the rule is longer than {MAX_RULE_LENGTH} characters."])
    match = _EQUALITY.match(rule) or _SET.match(rule)
    if match is None:
        raise RestrictionError([f"write PROPERTY OPERATOR VALUE, {EXAMPLES}."])
    prop, op = match["prop"], match["op"]
    allowed = PROPERTIES[kind]
    if prop not in allowed:
        if prop == "free":
            raise RestrictionError(["'free' applies to plans only; service rules use name or catalog_id."])
        raise RestrictionError([f"unknown property '{prop}' (use {', '.join(allowed[:-1])} or {allowed[-1]})."])
    raw = [match["value"]] if op in ("==", "!=") else match["values"].split(",")
    values = [item.strip() for item in raw]
    if any(not item for item in values):
        raise RestrictionError(["a value is missing." if op in ("==", "!=") else "the list has an empty value."])
    if any(ch in item for item in values for ch in "(),=!"):
        raise RestrictionError([f"write PROPERTY OPERATOR VALUE, {EXAMPLES}."])
    if prop == "free":
        values = [item.lower() for item in values]
        if any(item not in ("true", "false") for item in values):
            raise RestrictionError(["'free' is true or false."])
    shown = f"{prop}{op}{values[0]}" if op in ("==", "!=") else f"{prop} {op} ({', '.join(values)})"
    return Rule(text=shown, prop=prop, op=op, values=frozenset(values))
