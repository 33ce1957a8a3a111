"""The project's own docs stay true: the API guide's endpoint reference matches the OpenAPI document, and the
README's commands work right after the set-up."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from catalog_portal.management.commands import api_docs
from tests.conftest import ROOT


def test_docs_api_md_is_up_to_date_with_the_openapi_document() -> None:
    call_command("api_docs", "--check")


def test_the_check_fails_when_the_reference_is_stale() -> None:
    current = (ROOT / "docs" / "api.md").read_text()
    stale = current.replace("`/api/v1/instances/`", "`/api/v1/instancez/`", 1)
    assert api_docs.render(stale) == current  # the generated part is rewritten, the prose kept
    with pytest.raises(CommandError):
        api_docs.render(current.replace(api_docs.END, ""))


def test_every_operation_of_the_schema_is_in_the_reference() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    for path in ("/api/v1/instances/{instance_id}/", "/api/v1/bindings/{binding_id}/credentials/",
                 "/api/v1/brokers/{broker_id}/sync/", "/api/v1/operations/"):
        assert f"`{path}`" in text


def test_readme_commands_run_from_the_venv_the_set_up_made() -> None:
    """Right after `bash scripts/run.sh`, Django is only in .venv/: a bare `python manage.py` fails."""
    readme = (ROOT / "README.md").read_text()
    assert ".venv/bin/python manage.py drf_create_token admin" in readme
    assert not re.search(r"(?<![/\w])python manage\.py", readme.replace("-- python manage.py", "")), \
        "a README command runs `python manage.py` outside .venv/ (only inside a container is that right)"
    assert "shared/API.md" not in readme  # a clone has no shared/: the guide is docs/api.md
