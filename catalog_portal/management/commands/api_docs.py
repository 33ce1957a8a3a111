"""`python manage.py api_docs [--check]`: write the endpoint reference of docs/api.md from the OpenAPI document.

Only the part between the GENERATED markers is written; the guide around it is prose kept by hand. With --check
nothing is written and the command fails when the file is not up to date (the test suite runs that).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from drf_spectacular.generators import SchemaGenerator

BEGIN = "<!-- BEGIN GENERATED: endpoints (python manage.py api_docs) -->"
END = "<!-- END GENERATED: endpoints -->"
METHODS = ("get", "post", "put", "patch", "delete")


def _component(schema: dict[str, Any] | None) -> str:
    if not schema:
        return ""
    if "$ref" in schema:
        return f"`{schema['$ref'].rsplit('/', 1)[-1]}`"
    if schema.get("type") == "array" and "$ref" in schema.get("items", {}):
        return f"list of `{schema['items']['$ref'].rsplit('/', 1)[-1]}`"
    return f"`{schema.get('type', 'object')}`"


def _summary(operation: dict[str, Any]) -> str:
    """The operation's summary (or its description's first paragraph), else its operation id."""
    text = operation.get("summary") or (operation.get("description") or "").strip().split("\n\n")[0]
    return " ".join(text.split()).replace("|", "\\|") or f"`{operation['operationId']}`"


def _query(operation: dict[str, Any]) -> str:
    return ", ".join(f"`{p['name']}`" for p in operation.get("parameters", []) if p.get("in") == "query")


def endpoint_reference() -> str:
    """The endpoint tables, one per tag, from the OpenAPI document the portal serves at /api/v1/schema/."""
    with contextlib.redirect_stderr(io.StringIO()):  # drf-spectacular's naming warnings are issue 12's business
        schema = SchemaGenerator().get_schema(request=None, public=True)
    by_tag: dict[str, list[str]] = {}
    for path, operations in schema["paths"].items():
        for method in METHODS:
            operation = operations.get(method)
            if operation is None:
                continue
            body = (operation.get("requestBody") or {}).get("content", {}).get("application/json", {})
            answers = []
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {}).get("application/json", {})
                answers.append(f"{status} {_component(content.get('schema'))}".strip())
            row = (f"| `{method.upper()}` | `{path}` | {_summary(operation)} | {_query(operation)} | "
                   f"{_component(body.get('schema'))} | {'<br>'.join(answers)} |")
            by_tag.setdefault((operation.get("tags") or ["other"])[0], []).append(row)
    lines = [f"Generated from the OpenAPI document ({schema['info']['title']} {schema['info']['version']}), "
             "served at `/api/v1/schema/`."]
    for tag in sorted(by_tag):
        lines += ["", f"### {tag}", "", "| method | path | what | query | request body | answers |",
                  "|---|---|---|---|---|---|",
                  *by_tag[tag]]
    return "\n".join(lines)


def render(current: str) -> str:
    """`current` with its generated part replaced."""
    if BEGIN not in current or END not in current:
        raise CommandError(f"docs/api.md lacks the markers {BEGIN} ... {END}")
    head, rest = current.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{endpoint_reference()}\n{END}{tail}"


class Command(BaseCommand):
    help = "Write (or --check) the endpoint reference in docs/api.md from the OpenAPI document."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--check", action="store_true", help="Fail if docs/api.md is not up to date.")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(settings.BASE_DIR) / "docs" / "api.md"
        current = path.read_text()
        wanted = render(current)
        if options["check"]:
            if wanted != current:
                raise CommandError("docs/api.md is not up to date with the API: run `python manage.py api_docs`.")
            return
        if wanted != current:
            path.write_text(wanted)
            self.stdout.write(f"Wrote {path}")
