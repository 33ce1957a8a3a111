"""Limits on JSON that people send (request bodies, instance and binding parameters), checked without recursion so
that hostile nesting cannot exhaust the stack; and a depth-capped rendering of whatever is already stored."""

from __future__ import annotations

import json
import threading
from typing import Any

from django.conf import settings

from catalog_portal.exceptions import ApplicationError

TOO_DEEP = "…"  # what `capped` puts in place of values nested beyond its limit


def depth_exceeds(value: Any, limit: int) -> bool:
    """Whether `value` nests objects/arrays more than `limit` levels deep (a scalar is depth 0, {} and [] depth 1).
    Iterative: safe for any nesting."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth + 1 > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def capped(value: Any, limit: int = 64) -> Any:
    """A copy of `value` with anything nested deeper than `limit` replaced by TOO_DEEP: safe to encode, mask or
    render recursively. Iterative."""
    if not isinstance(value, dict | list):
        return value
    root: Any = {} if isinstance(value, dict) else []
    stack: list[tuple[Any, Any, int]] = [(value, root, 1)]
    while stack:
        source, target, depth = stack.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, item in items:
            if isinstance(item, dict | list):
                if depth >= limit:
                    child: Any = TOO_DEEP
                else:
                    child = {} if isinstance(item, dict) else []
                    stack.append((item, child, depth + 1))
            else:
                child = item
            if isinstance(target, dict):
                target[key] = child
            else:
                target.append(child)
    return root


def check_parameters_size(parameters: Any, *, field: str = "parameters") -> None:
    """Refuse parameters nested deeper than PARAMETERS_MAX_DEPTH or larger than PARAMETERS_MAX_BYTES (as compact
    JSON) with a 400 naming the limit."""
    max_depth = settings.PARAMETERS_MAX_DEPTH
    if depth_exceeds(parameters, max_depth):
        message = f"Parameters may be nested at most {max_depth} levels deep (PARAMETERS_MAX_DEPTH)."
        raise ApplicationError(message, fields={field: [message]})
    max_bytes = settings.PARAMETERS_MAX_BYTES
    size = len(json.dumps(parameters, separators=(",", ":"), ensure_ascii=False).encode())
    if size > max_bytes:
        message = (f"Parameters may be at most {max_bytes} bytes as JSON (PARAMETERS_MAX_BYTES); these are "
                   f"{size} bytes.")
        raise ApplicationError(message, fields={field: [message]})


class StoredJSONDecoder(json.JSONDecoder):
    """Reads a stored JSON column whatever its nesting: the values were parsed once when accepted, but deep in a
    request's stack (a page rendering an instance) the same value can exceed Python's recursion limit. Then it is
    decoded again in a fresh thread, whose stack starts empty. Pages cap what they show (`capped`)."""

    def decode(self, s: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().decode(s, *args, **kwargs)
        except RecursionError:
            pass
        result: dict[str, Any] = {}

        def fresh() -> None:
            try:
                result["value"] = json.loads(s)
            except RecursionError:
                result["value"] = {"unreadable": "This value is nested too deeply to read."}

        thread = threading.Thread(target=fresh, name="json-decode")
        thread.start()
        thread.join()
        return result["value"]
