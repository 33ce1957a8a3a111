"""The API's JSON parser: a body nested too deeply is a 400, not a RecursionError (500)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from catalog_portal.jsonlimits import depth_exceeds


def _too_deep() -> ParseError:
    limit = settings.REQUEST_JSON_MAX_DEPTH
    return ParseError(f"JSON parse error - the body is nested more than {limit} levels deep "
                      "(REQUEST_JSON_MAX_DEPTH).")


class JSONParser(parsers.JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise _too_deep() from None
        if depth_exceeds(data, settings.REQUEST_JSON_MAX_DEPTH):
            raise _too_deep()
        return data
