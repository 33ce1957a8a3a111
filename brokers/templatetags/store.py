"""Template filters of the store: prices, icons, and broker text made safe to show."""

from __future__ import annotations

import html
import re
import zlib
from collections.abc import Iterable
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from django import template
from django.template.defaultfilters import pluralize
from django.urls import get_script_prefix, reverse
from django.utils import timezone
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.timesince import timesince

from brokers import pricing
from brokers.models import ServicePlan

register = template.Library()

# Tile colours for services without an icon: all pass AA contrast with white text.
TILE_COLOURS = ("#2557d6", "#0f766e", "#7c3aed", "#b42318", "#a15c07", "#1d4ed8", "#be185d", "#047857")
URL_RE = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
TRAILING = ".,;:!?)]}'\""


@register.filter
def http_url(value: Any) -> str:
    """The URL if it is an absolute http(s) URL, else "" (never a javascript: or data: link)."""
    text = str(value or "").strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        return ""
    return text if parts.scheme.lower() in ("http", "https") and parts.netloc else ""


@register.filter
def image_url(value: Any) -> str:
    text = str(value or "").strip()
    return http_url(text) or (text if re.match(r"data:image/(png|gif|jpeg|webp|svg\+xml)[;,]", text) else "")


@register.filter
def tile_colour(value: Any) -> str:
    return TILE_COLOURS[zlib.crc32(str(value).encode()) % len(TILE_COLOURS)]


@register.filter
def initial(value: Any) -> str:
    text = str(value or "").strip()
    return text[:1].upper() or "?"


def _linkify(text: str) -> str:
    """Escape `text`, then turn http(s) URLs into links (the URL is escaped in both places)."""
    out, last = [], 0
    for match in URL_RE.finditer(text):
        url = match.group(0)
        stripped = url.rstrip(TRAILING)
        # Keep a closing parenthesis that belongs to the URL, as in wiki links.
        while stripped != url and url[len(stripped)] == ")" and stripped.count("(") > stripped.count(")"):
            stripped += ")"
        url, end = stripped, match.start() + len(stripped)
        out.append(escape(text[last : match.start()]))
        out.append(format_html('<a href="{}" rel="nofollow noopener noreferrer">{}</a>', url, url))
        last = end
    out.append(escape(text[last:]))
    return "".join(out)


@register.filter
def paragraphs(value: Any) -> SafeString:
    """Plain text from a broker as paragraphs: no HTML gets through, http(s) URLs become links."""
    text = str(value or "").replace("\r\n", "\n").strip()
    blocks = [block.strip() for block in re.split(r"\n\s*\n", text) if block.strip()]
    html = "".join("<p>{}</p>".format(_linkify(block).replace("\n", "<br>")) for block in blocks)
    return mark_safe(html)  # noqa: S308 - every piece of broker text went through escape()


@register.filter
def price_badge(plans: Iterable[ServicePlan]) -> str:
    return pricing.offering_badge(plans)


@register.filter
def plan_price(plan: ServicePlan) -> str:
    return pricing.price_label(plan)


@register.filter
def plan_prices(plan: ServicePlan) -> list[pricing.Price]:
    return pricing.plan_prices(plan)


@register.simple_tag
def service_icon(offering: Any, size: int) -> SafeString:
    """The service's icon (an http(s) or data:image URL), with a coloured tile of its initial as the fallback."""
    return mark_safe(_icon_html(offering, int(size)))  # noqa: S308 - _icon_html escapes every value


@register.simple_tag
def service_card(offering: Any, note: int | None = None) -> SafeString:
    """A marketplace card. Built here with f-strings rather than by nested includes and filters: the grid shows
    24 of them, and rendering them was most of a cache miss. Every value from a broker goes through `_e`."""
    badge = pricing.offering_badge(offering.active_plans)
    tags = [str(tag) for tag in (offering.tags or [])[:3]]
    badge_html = f'<span class="badge {"free" if badge == "Free" else "paid"}">{_e(badge)}</span>' if badge else ""
    note_html = f'<p class="svc-note">Provisioned {int(note)} time{pluralize(note)} here</p>' if note else ""
    items = "".join(f'<li class="tag">{_e(tag)}</li>' for tag in tags)
    tags_html = f'<ul class="tags" aria-label="Tags">{items}</ul>' if tags else ""
    url = _service_url(offering.pk)
    return mark_safe(  # noqa: S308 - every value is escaped
        f'\n<article class="svc-card">\n  {_icon_html(offering, 48)}\n\n  {badge_html}\n'
        f'  <h3 class="svc-name"><a class="stretched" href="{_e(url)}">{_e(offering.title)}</a></h3>\n'
        f'  <p class="svc-provider">{_e(offering.provider or offering.broker.name)}</p>\n'
        f'  <p class="desc">{_e(offering.description)}</p>\n  {note_html}\n  {tags_html}\n</article>\n'
    )


_ANY_ID = "00000000-0000-0000-0000-000000000000"


@lru_cache(maxsize=8)
def _service_url_template(script_prefix: str) -> str:
    return reverse("brokers:service-detail", args=[_ANY_ID])


def _service_url(pk: Any) -> str:
    """reverse() of the service page, resolved once per script prefix (a page links 24 services)."""
    return _service_url_template(get_script_prefix()).replace(_ANY_ID, str(pk))


def _e(value: Any) -> str:
    """What `{{ value }}` shows (`&`, `<`, `>`, quotes escaped; the same function Django's escape calls)."""
    return html.escape(str(value))


def _icon_html(offering: Any, size: int) -> str:
    src = image_url(offering.image_url)
    tile = (f'<span class="icon tile" style="background:{tile_colour(offering.name)}" aria-hidden="true"'
            f'{" hidden" if src else ""}>{_e(initial(offering.title))}</span>')
    if src:
        tile = (f'<img class="icon" src="{_e(src)}" alt="" width="{size}" height="{size}" loading="lazy" '
                f'referrerpolicy="no-referrer" data-fallback>{tile}')
    return f'<span class="icon-slot s{size}">{tile}</span>'


@register.simple_tag
def facet_options(param: str, options: list[Any]) -> SafeString:
    """A facet's check boxes (the ninth and later inside a "more" disclosure), or "No options"."""
    if not options:
        return mark_safe('<p class="muted small facet-none">No options</p>')
    parts = []
    for number, option in enumerate(options, 1):
        if number == 9:
            parts.append(f'\n        <details class="facet-more" id="facet-more-{_e(param)}">\n          '
                         f"<summary>{len(options) - 8} more</summary>")
        parts.append(
            f'\n          <label class="check" for="{_e(option.id)}"><input type="checkbox" id="{_e(option.id)}" '
            f'name="{_e(option.param)}" value="{_e(option.value)}"{" checked" if option.selected else ""}>'
            f'<span class="check-label">{_e(option.label)}</span><span class="count">{int(option.count)}</span></label>'
        )
    if len(options) > 8:
        parts.append("\n        </details>")
    return mark_safe("".join(parts))  # noqa: S308 - every value is escaped


@register.simple_tag
def page_url(form: Any, number: int) -> str:
    """The marketplace query string of page `number`, with the current filters."""
    return form.querystring(page=number) or "?"


@register.filter
def elided_pages(paginator: Any, number: int) -> Any:
    return paginator.get_elided_page_range(number, on_each_side=1, on_ends=1)


@register.filter
def ago(value: Any) -> str:
    """'just now' under a minute, else Django's timesince ('3 minutes ago')."""
    if not value:
        return ""
    if (timezone.now() - value).total_seconds() < 60:
        return "just now"
    return f"{timesince(value)} ago"


@register.filter
def wait_words(seconds: Any) -> str:
    """A maximum polling duration in words ("30 min", "2 h")."""
    try:
        seconds = int(seconds)
    except (TypeError, ValueError):
        return ""
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{round(seconds / 60)} min"
    hours = seconds / 3600
    return f"{hours:.0f} h" if hours == int(hours) else f"{hours:.1f} h"


TYPE_WORDS = {"string": "text", "integer": "whole number", "number": "number", "boolean": "yes/no",
              "array": "list", "object": "group"}


@register.filter
def parameter_preview(plan: ServicePlan) -> list[dict[str, Any]]:
    """The top-level parameters a plan's provision form asks for: label (title, else the name), kind in words,
    required, default and description; [] when the plan describes none."""
    schema = plan.instance_create_schema or {}
    properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    required = set(schema.get("required") or []) if isinstance(schema.get("required"), list) else set()
    rows = []
    for name, prop in properties.items():
        prop = prop if isinstance(prop, dict) else {}
        kind = prop.get("type")
        words = "choice" if "enum" in prop else TYPE_WORDS.get(kind if isinstance(kind, str) else "", "value")
        default = prop.get("default")
        rows.append({
            "label": str(prop.get("title") or name), "kind": words, "required": name in required,
            "default": "" if default is None or isinstance(default, dict | list) else
            ("yes" if default is True else "no" if default is False else str(default)),
            "description": str(prop.get("description") or ""),
        })
    return rows
