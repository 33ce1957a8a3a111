"""Parsing of the marketplace's query string, and the URLs and chips built from it."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django import forms

from brokers.selectors import STORE_SORTS, StoreFacets

SORT_CHOICES = [("relevance", "Best match"), ("name", "Name"), ("provider", "Provider"), ("newest", "Newest")]
PRICE_CHOICES = [("free", "Free"), ("paid", "Paid")]
MAX_VALUES = 20
# Values listed per facet (the chosen ones always are): enough to browse, few enough to render quickly; search
# narrows the rest.
FACET_LIMIT = 40


class StringListField(forms.Field):
    """A repeated query parameter (`?tag=a&tag=b`): trimmed, de-duplicated, bounded."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: Any) -> list[str]:
        seen: dict[str, str] = {}
        for item in value or []:
            text = str(item).strip()[:200]
            if text and text.lower() not in seen:
                seen[text.lower()] = text
        return list(seen.values())[:MAX_VALUES]


@dataclass(frozen=True)
class FacetOption:
    param: str
    value: str
    label: str
    count: int
    selected: bool

    @property
    def id(self) -> str:
        return f"f-{self.param}-{zlib.crc32(self.value.lower().encode()):08x}"


@dataclass(frozen=True)
class Chip:
    label: str
    url: str
    phrase: str = ""  # how the empty state names it

    def __post_init__(self) -> None:
        if not self.phrase:
            object.__setattr__(self, "phrase", self.label)


class MarketplaceForm(forms.Form):
    q = forms.CharField(required=False, max_length=200, strip=True)
    tag = StringListField(required=False)
    broker = StringListField(required=False)
    provider = StringListField(required=False)
    price = forms.MultipleChoiceField(choices=PRICE_CHOICES, required=False)
    sort = forms.ChoiceField(choices=SORT_CHOICES, required=False)
    page = forms.IntegerField(min_value=1, required=False)

    def __init__(self, data: Any) -> None:
        super().__init__(data)
        # Bad values are dropped one by one: a shared link with a stale value still shows a page.
        self.is_valid()
        self.values: dict[str, Any] = {
            "q": self.cleaned_data.get("q") or "",
            "tag": self.cleaned_data.get("tag") or [],
            "broker": self.cleaned_data.get("broker") or [],
            "provider": self.cleaned_data.get("provider") or [],
            "price": [p for p, _ in PRICE_CHOICES if p in (self.cleaned_data.get("price") or [])],
        }
        # Searching, the best matches come first unless another order is asked for.
        asked = self.cleaned_data.get("sort")
        self.values["sort"] = asked if asked in (*STORE_SORTS, "relevance") else self.default_sort
        if self.values["sort"] == "relevance" and not self.values["q"]:
            self.values["sort"] = "name"

    @property
    def default_sort(self) -> str:
        return "relevance" if self.values["q"] else "name"

    @property
    def sort_choices(self) -> list[tuple[str, str]]:
        """The order choices; the default one posts "" so that it stays the default when a search starts or
        ends (best match while searching, name otherwise)."""
        default = self.default_sort
        labels = dict(SORT_CHOICES)
        others = [(v, label) for v, label in SORT_CHOICES if v not in (default, "relevance")]
        return [("", labels[default]), *others]

    @property
    def sort_value(self) -> str:
        return "" if self.values["sort"] == self.default_sort else self.values["sort"]

    @property
    def is_landing(self) -> bool:
        """The marketplace as it first opens (nothing chosen): it leads with categories, new and popular services."""
        return not self.is_filtered and self.page_number == 1 and self.values["sort"] == "name"

    # --- what the selectors take ----------------------------------------------------------------

    @property
    def free(self) -> bool | None:
        price = self.values["price"]
        return {("free",): True, ("paid",): False}.get(tuple(price))

    def filters(self) -> dict[str, Any]:
        v = self.values
        return {
            "search": v["q"],
            "tags": v["tag"],
            "brokers": v["broker"],
            "providers": v["provider"],
            "free": self.free,
        }

    @property
    def page_number(self) -> int:
        return self.cleaned_data.get("page") or 1

    @property
    def is_filtered(self) -> bool:
        return any(self.values[k] for k in ("q", "tag", "broker", "provider", "price"))

    # --- URLs -----------------------------------------------------------------------------------

    def querystring(self, **changes: Any) -> str:
        """The canonical query string (defaults left out) with `changes` applied."""
        values = {**self.values, **changes}
        pairs: list[tuple[str, Any]] = []
        for key in ("q", "tag", "provider", "broker", "price"):
            value = values.get(key)
            pairs += (
                [(key, item) for item in value] if isinstance(value, list) else [(key, value)] * bool(value)
            )
        default = "relevance" if values.get("q") else "name"
        if values.get("sort") and values["sort"] != default and (values["sort"] != "relevance" or values.get("q")):
            pairs.append(("sort", values["sort"]))
        if values.get("page") and values["page"] != 1:
            pairs.append(("page", values["page"]))
        return "?" + urlencode(pairs) if pairs else ""

    def without(self, key: str, item: str | None = None) -> str:
        value = self.values[key]
        return self.querystring(**{key: [v for v in value if v != item] if isinstance(value, list) else ""})

    def chips(self) -> list[Chip]:
        names = {"tag": "Tag", "provider": "Provider", "broker": "Broker"}
        q = self.values["q"]
        chips = [Chip(f"Search: “{q}”", self.without("q"), f"“{q}”")] if q else []
        for key, name in names.items():
            chips += [Chip(f"{name}: {value}", self.without(key, value)) for value in self.values[key]]
        chips += [Chip(dict(PRICE_CHOICES)[p], self.without("price", p)) for p in self.values["price"]]
        return chips

    def clear_url(self) -> str:
        return self.querystring(q="", tag=[], provider=[], broker=[], price=[])

    # --- facets for the template ----------------------------------------------------------------

    def facet_groups(self, facets: StoreFacets) -> list[tuple[str, str, list[FacetOption]]]:
        price_counts = [("free", facets.free), ("paid", facets.paid)]
        return [
            ("tag", "Category", self._options("tag", facets.tags)),
            ("provider", "Provider", self._options("provider", facets.providers)),
            ("broker", "Broker", self._options("broker", facets.brokers)),
            (
                "price",
                "Price",
                [
                    FacetOption(
                        "price", value, dict(PRICE_CHOICES)[value], count, value in self.values["price"]
                    )
                    for value, count in price_counts
                ],
            ),
        ]

    def _options(self, param: str, counts: list[tuple[str, int]]) -> list[FacetOption]:
        chosen = {value.lower(): value for value in self.values[param]}
        options = [FacetOption(param, value, value, n, value.lower() in chosen) for value, n in counts]
        listed = {option.value.lower() for option in options}
        # A chosen value with no results left stays listed, so it can be unticked.
        missing = [FacetOption(param, v, v, 0, True) for k, v in chosen.items() if k not in listed]
        chosen_first = sorted(options + missing, key=lambda o: not o.selected)
        return chosen_first[: max(FACET_LIMIT, len(chosen))]
