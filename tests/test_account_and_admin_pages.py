"""The small pages: the account's API token, the admin's broker form, the favicon, shared tables and date pickers."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from rest_framework.authtoken.models import Token

from tests.conftest import signed_in

pytestmark = pytest.mark.django_db


def test_the_token_page_confirms_before_replacing_copies_and_dates_the_token(alice: Any) -> None:
    client = signed_in(alice)
    html = client.get("/account/").content.decode()
    assert "You have no token yet." in html and "Create token" in html
    created = client.post("/account/").content.decode()
    key = Token.objects.get(user=alice).key
    assert key in created and 'data-copy="token"' in created and "shown only this once" in created
    page = client.get("/account/").content.decode()
    assert key not in page and "Created" in page
    # Replacing is behind a confirmation that says what happens
    confirm = re.search(r'<details class="confirm-inline replace-token">(.*?)</details>', page, re.S)
    assert confirm and "Replace token…" in confirm.group(1) and "stop working" in confirm.group(1)
    client.post("/account/")
    assert Token.objects.get(user=alice).key != key


def test_the_broker_form_has_real_labels_grouped_auth_and_no_status_on_add(admin_user: Any) -> None:
    html = signed_in(admin_user).get("/admin/brokers/broker/add/").content.decode()
    labels = re.findall(r'<label[^>]*for="id_(\w+)"[^>]*>([^<]+)', html)
    named = {field: text.strip().rstrip(":") for field, text in labels}
    assert named["url"] == "URL" and named["verify_tls"] == "Verify TLS" and named["ca_bundle"] == "CA bundle"
    fieldsets = re.findall(r'<fieldset class="module[^"]*"[^>]*>(.*?)</fieldset>', html, re.S)
    auth = next(f for f in fieldsets if "Authentication" in f)
    assert all(f'id="id_{name}"' in auth for name in ("auth_type", "auth_username", "secret"))
    assert "Status" not in "".join(re.findall(r"<h2[^>]*>([^<]+)</h2>", html)) and "id_status" not in html
    assert 'rel="icon"' in html


def test_the_favicon_is_the_logo(client: Any) -> None:
    response = client.get("/favicon.ico")
    # The logo's hashed, long-cached name (collectstatic's manifest), so the redirect itself must not be permanent.
    assert response.status_code == 302
    assert re.fullmatch(r"/static/img/logo\.[0-9a-f]{12}\.svg", response["Location"]), response["Location"]


def test_teams_and_audit_use_the_shared_table_and_date_pickers(admin_user: Any, team_a: Any) -> None:
    client = signed_in(admin_user)
    teams = client.get("/teams/").content.decode()
    assert 'class="data-table teams-table"' in teams and 'data-label="Namespaces"' in teams
    audit = client.get("/audit/").content.decode()
    assert 'type="date" name="since"' in audit and 'type="date" name="until"' in audit
    assert client.get("/audit/", {"since": "2020-01-01", "until": "2999-12-31"}).status_code == 200


def test_the_token_page_says_when_the_token_was_last_used(alice: Any) -> None:
    from rest_framework.test import APIClient

    from teams.models import AuditRecord, TokenUse

    client = signed_in(alice)
    client.post("/account/")
    key = Token.objects.get(user=alice).key
    assert "Not used yet" in client.get("/account/").content.decode()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/v1/services/").status_code == 200
    first = TokenUse.objects.get(token_id=key).last_used_at
    page = client.get("/account/").content.decode()
    assert "Not used yet" not in page
    assert re.search(r"<dt>Last used</dt><dd><time datetime=\"[^\"]+\">", page)
    # A busy script writes at most once a minute: a second call right away leaves the time as it was.
    assert api.get("/api/v1/services/").status_code == 200
    assert TokenUse.objects.get(token_id=key).last_used_at == first
    # ...but a minute later it moves.
    TokenUse.objects.filter(token_id=key).update(last_used_at=first - timedelta(minutes=2))
    assert api.get("/api/v1/services/").status_code == 200
    assert TokenUse.objects.get(token_id=key).last_used_at > first - timedelta(minutes=2)
    # A failed sign-in is not a use, and a replaced token starts unused.
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert bad.get("/api/v1/services/").status_code == 401
    client.post("/account/")
    assert "Not used yet" in client.get("/account/").content.decode()
    assert list(AuditRecord.objects.filter(actor=alice, action__startswith="token.").order_by("at")
                .values_list("action", flat=True)) == ["token.create", "token.replace"]
