"""Prices of plans as people read them, from the OSB profile's `metadata.costs`.

Pure functions over mirrored plans: no queries, so the store can call them on prefetched plans.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from brokers.models import ServicePlan

CURRENCY_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥"}
UNITS = {
    "MONTHLY": "month",
    "HOURLY": "hour",
    "DAILY": "day",
    "WEEKLY": "week",
    "YEARLY": "year",
    "ANNUALLY": "year",
    "GB-MONTH": "GB-month",
}
# To rank plans billed per hour, day, ... against monthly ones.
PER_MONTH = {
    "MONTHLY": 1.0,
    "HOURLY": 730.0,
    "DAILY": 30.0,
    "WEEKLY": 4.345,
    "YEARLY": 1 / 12,
    "ANNUALLY": 1 / 12,
}


@dataclass(frozen=True)
class Price:
    amount: float
    currency: str
    unit: str

    @property
    def monthly(self) -> float:
        return self.amount * PER_MONTH.get(self.unit.upper(), 1.0)

    @property
    def recurring(self) -> bool:
        return self.unit.upper() in PER_MONTH

    @property
    def money(self) -> str:
        return format_money(self.amount, self.currency)

    @property
    def per(self) -> str:
        return format_unit(self.unit)

    def __str__(self) -> str:
        return f"{self.money}/{self.per}" if self.unit else self.money


def format_money(amount: float, currency: str) -> str:
    if amount == int(amount):
        number = f"{int(amount):,}"
    elif amount >= 1:
        number = f"{amount:,.2f}"
    else:
        number = f"{amount:.4f}".rstrip("0")
        number = number if len(number.split(".")[1]) >= 2 else f"{amount:.2f}"
    symbol = CURRENCY_SYMBOLS.get(currency.lower())
    return f"{symbol}{number}" if symbol else f"{number} {currency.upper()}"


def format_unit(unit: str) -> str:
    known = UNITS.get(unit.upper())
    if known:
        return known
    return unit.replace("_", " ").lower() if unit.isupper() else unit


def plan_prices(plan: ServicePlan) -> list[Price]:
    """One price per cost entry, in US dollars when the broker gives them, else its first currency."""
    prices = []
    for cost in plan.costs if isinstance(plan.costs, list) else []:
        amounts: Any = cost.get("amount") if isinstance(cost, dict) else None
        if not isinstance(amounts, dict) or not amounts:
            continue
        currency = "usd" if "usd" in amounts else next(iter(amounts))
        amount = amounts[currency]
        if isinstance(amount, int | float) and not isinstance(amount, bool) and math.isfinite(amount):
            prices.append(Price(float(amount), str(currency), str(cost.get("unit") or "")))
    return prices


def plan_rank(plan: ServicePlan) -> tuple[int, float, int]:
    """Free plans first; then plans with a recurring price, by their total per month; then plans
    billed by usage only (per GB, per request...), by their smallest amount; paid plans without costs last."""
    if plan.free:
        return (0, 0.0, plan.position)
    prices = plan_prices(plan)
    recurring = [p.monthly for p in prices if p.recurring]
    if recurring:
        return (1, sum(recurring), plan.position)
    return (2, min(p.amount for p in prices), plan.position) if prices else (3, 0.0, plan.position)


def headline_price(plan: ServicePlan) -> Price | None:
    """The price a plan is known by: its cheapest recurring cost, else its cheapest usage cost."""
    prices = plan_prices(plan)
    recurring = [p for p in prices if p.recurring]
    if recurring:
        return min(recurring, key=lambda p: p.monthly)
    return min(prices, key=lambda p: p.amount) if prices else None


def plans_by_price(plans: Iterable[ServicePlan]) -> list[ServicePlan]:
    return sorted(plans, key=plan_rank)


def price_label(plan: ServicePlan) -> str:
    if plan.free:
        return "Free"
    prices = plan_prices(plan)
    return " + ".join(str(p) for p in prices) if prices else "Paid"


def offering_badge(plans: Iterable[ServicePlan]) -> str:
    """'Free' when a plan is free, else 'from $X/month' (the cheapest plan's price), else 'Paid'."""
    plans = list(plans)
    if any(plan.free for plan in plans):
        return "Free"  # what ranking would put first (a shortcut: the grid shows ~120 plans)
    ranked = plans_by_price(plans)
    if not ranked:
        return ""
    if ranked[0].free:
        return "Free"
    price = headline_price(ranked[0])
    return f"from {price}" if price else "Paid"
