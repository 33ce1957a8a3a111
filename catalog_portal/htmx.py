"""htmx helpers shared by the store pages."""

from __future__ import annotations

from django.http import HttpRequest


def htmx_partial(request: HttpRequest) -> bool:
    """An htmx swap of part of the page (not a boosted link, not a history restore): answer with the fragment
    (`_*.html`) rather than the whole page."""
    htmx = getattr(request, "htmx", None)
    if not htmx:
        return False
    return not (htmx.boosted or htmx.history_restore_request)
