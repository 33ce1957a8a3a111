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

from tests.instances.helpers import run_operations
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


# --- a client that knows only the document ------------------------------------------------------------------


def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0's schema dialect as JSON Schema: `nullable: true` becomes "or null"."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable"):
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


class DocumentClient:
    """Calls the API and checks each request body and each answer against the document's schemas for that
    operation and status; an answer whose status the operation does not list fails."""

    def __init__(self, api: Any, document: dict[str, Any]) -> None:
        self.api, self.document = api, document
        self.components = _json_schema(document["components"])

    def _operation(self, method: str, template: str) -> dict[str, Any]:
        return self.document["paths"][template][method]

    def _check(self, body: Any, schema: dict[str, Any]) -> None:
        jsonschema.validate(body, {**_json_schema(schema), "components": self.components},
                            format_checker=jsonschema.FormatChecker())

    def call(self, method: str, template: str, *, body: Any = None, query: str = "", **ids: str) -> tuple[int, Any]:
        operation = self._operation(method, template)
        if body is not None:
            self._check(body, operation["requestBody"]["content"]["application/json"]["schema"])
        url = template.format(**ids) + (f"?{query}" if query else "")
        response = getattr(self.api, method)(url, body, format="json") if body is not None else \
            getattr(self.api, method)(url)
        status = str(response.status_code)
        assert status in operation["responses"], (method, url, status, response.content[:300])
        content = operation["responses"][status].get("content")
        if content is None:
            assert not response.content, (method, url, response.content[:300])
            return response.status_code, None
        data = response.json()
        self._check(data, content["application/json"]["schema"])
        return response.status_code, data


def test_a_client_of_the_document_provisions_binds_reads_credentials_unbinds_and_deprovisions(
    world: World,  # noqa: F811
) -> None:
    client = DocumentClient(world.api["alice"], _document())

    status, plans = client.call("get", "/api/v1/plans/", query=f"service={world.cache.offering_id}")
    assert status == 200 and str(world.cache.pk) in {p["id"] for p in plans["results"]}
    status, error = client.call("get", "/api/v1/plans/", query="page=0")
    assert status == 400 and error["code"] == "invalid" and error["page"]

    status, instance = client.call("post", "/api/v1/instances/", body={
        "name": "orders-db", "namespace": "team-a", "plan": str(world.cache.pk), "parameters": {}})
    assert status == 202 and instance["last_operation"]["state"] in ("pending", "in_progress", "succeeded")
    run_operations()
    status, instance = client.call("get", "/api/v1/instances/{instance_id}/", instance_id=instance["id"])
    assert status == 200 and instance["state"] == "ready", instance
    status, page = client.call("get", "/api/v1/instances/", query="namespace=team-a")
    assert status == 200 and instance["id"] in {row["id"] for row in page["results"]}

    status, binding = client.call("post", "/api/v1/bindings/", body={"instance": instance["id"], "name": "orders-app"})
    assert status == 202
    run_operations()
    status, binding = client.call("get", "/api/v1/bindings/{binding_id}/", binding_id=binding["id"])
    assert status == 200 and binding["state"] == "ready", binding
    status, secret = client.call("get", "/api/v1/bindings/{binding_id}/credentials/", binding_id=binding["id"])
    assert status == 200 and secret["credentials"]
    status, operations = client.call("get", "/api/v1/operations/", query=f"binding={binding['id']}")
    assert status == 200 and operations["count"] >= 1

    status, conflict = client.call("delete", "/api/v1/instances/{instance_id}/", instance_id=instance["id"])
    assert status == 409 and conflict["detail"] and conflict["code"]

    status, _ = client.call("delete", "/api/v1/bindings/{binding_id}/", binding_id=binding["id"])
    assert status == 202
    run_operations()
    status, gone = client.call("get", "/api/v1/bindings/{binding_id}/", binding_id=binding["id"])
    assert status == 404 and gone["code"] == "not_found"

    status, _ = client.call("delete", "/api/v1/instances/{instance_id}/", instance_id=instance["id"])
    assert status == 202
    run_operations()
    status, gone = client.call("get", "/api/v1/instances/{instance_id}/", instance_id=instance["id"])
    assert status == 404 and gone["code"] == "not_found"


# --- the API validates what the document says ----------------------------------------------------------------


@pytest.mark.parametrize("query", [
    "page=0", "page=abc", "page=1&page=2", "page_size=0", "page_size=501", "page_size=null&page_size=null",
    "namespace=", "namespace=Not_A_Label", "state=nonsense", "plan=not-a-uuid",
])
def test_wrong_query_parameters_answer_400_with_the_error_body(alice_api: Any, query: str) -> None:
    response = alice_api.get(f"/api/v1/instances/?{query}")
    assert response.status_code == 400, response.content
    body = response.json()
    name = query.split("=", 1)[0]
    assert body["code"] == "invalid" and body[name] and body["detail"].startswith(f"{name}: ")


@pytest.mark.parametrize("query", ["free=yes", "free=1", "active=True", "broker=x"])
def test_boolean_and_id_filters_take_only_what_the_document_says(alice_api: Any, query: str) -> None:
    assert alice_api.get(f"/api/v1/services/?{query}").status_code == 400


def test_a_page_past_the_last_is_404_and_good_parameters_pass(alice_api: Any) -> None:
    assert alice_api.get("/api/v1/services/?free=true&active=false&page_size=500").status_code == 200
    past = alice_api.get("/api/v1/services/?page=2")
    assert past.status_code == 404 and past.json()["code"] == "not_found"


def test_plan_visibility_patch_is_partial_as_documented(world: World) -> None:  # noqa: F811
    admin = world.api["admin"]
    url = f"/api/v1/plans/{world.hidden.pk}/"
    unchanged = admin.patch(url, {}, format="json")
    assert unchanged.status_code == 200
    assert unchanged.json()["visibility"] == "teams" and unchanged.json()["teams"] == [str(world.team_b.pk)]
    public = admin.patch(url, {"visibility": "public"}, format="json")
    assert public.status_code == 200 and public.json()["teams"] == []


def test_bodies_take_the_types_the_document_says(admin_api: Any) -> None:
    wrong = admin_api.post("/api/v1/teams/", {"name": "team-z", "namespaces": [0]}, format="json")
    assert wrong.status_code == 400 and wrong.json()["namespaces"]
    form = admin_api.post("/api/v1/teams/", {"name": "team-z"}, format="multipart")
    assert form.status_code == 415 and form.json()["code"] == "unsupported_media_type"
