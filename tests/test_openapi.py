"""The OpenAPI document at /api/v1/schema/ describes exactly what the API does (issue 12).

- drf-spectacular validates the document and has nothing to warn about;
- schemathesis, run against a live portal seeded with the HTTP test broker, teams, instances and bindings, as a
  platform admin and as a developer of another team, finds nothing: no server error, no undocumented status,
  content type or body, valid input accepted and invalid input refused (tests/openapi/schemathesis.toml lists
  the few operation-check pairs left out, each with its reason);
- a client that knows only the document provisions, binds, reads credentials, unbinds and deprovisions, every
  answer valid against the document's schemas.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from tests.conftest import wait_for
from tests.test_personas import World, world  # noqa: F401 - the seeded portal

CONFIG = Path(__file__).parent / "openapi" / "schemathesis.toml"


def _document() -> dict[str, Any]:
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


def test_spectacular_validates_the_document_without_warnings(tmp_path: Path) -> None:
    stderr = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"),
                 stderr=stderr)
    assert "Warning" not in stderr.getvalue() and "Error" not in stderr.getvalue(), stderr.getvalue()


def test_every_operation_documents_its_errors_with_the_shared_body() -> None:
    document = _document()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert {"401", "406"} <= set(responses), (method, path)
            for code, response in responses.items():
                if code.startswith(("4", "5")):
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.rsplit("/", 1)[-1] in ("Error", "ValidationError", "ConflictError"), (method, path)
            assert operation.get("summary"), (method, path)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("persona", ["admin", "carol"])
def test_schemathesis_finds_nothing(persona: str, world: World, live_server: Any, tmp_path: Path) -> None:  # noqa: F811
    """admin: a platform admin; carol: a developer of team B, who does not see team A's objects."""
    schema = tmp_path / "openapi.json"
    schema.write_text(json.dumps(_document()))
    key = Token.objects.get(user=world.users[persona]).key
    report = tmp_path / "report"
    command = [
        str(Path(sys.executable).with_name("st")), "--config-file", str(CONFIG), "--no-color", "run", str(schema),
        "--url", live_server.url, "-H", f"Authorization: Token {key}",
        "--phases", "examples,coverage,fuzzing", "--workers", "1", "--request-timeout", "30",
        "--report", "ndjson", "--report-dir", str(report),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, "NO_COLOR": "1"},
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-3000:]
