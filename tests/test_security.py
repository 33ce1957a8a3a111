"""Security defaults: headers (CSP and friends), request ids, sign-in throttling, CSRF, error pages without secrets."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.conf import settings
from django.test import Client, RequestFactory

from catalog_portal import views
from tests.conftest import signed_in


@pytest.fixture
def admin_client_(admin_user: Any) -> Client:
    return signed_in(admin_user)


@pytest.mark.parametrize("url", ["/", "/login/", "/api/v1/brokers/", "/teams/", "/nothing-here/"])
def test_every_response_carries_the_security_headers(admin_client_: Client, url: str) -> None:
    response = admin_client_.get(url)
    csp = response["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"  # no inline script, no eval, no CDN
    assert directives["frame-ancestors"] == "'none'"
    assert set(directives["img-src"].split()) == {"'self'", "data:", "https:", "http:"}  # brokers' icons
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Request-ID"]


def test_pages_have_no_inline_scripts(admin_client_: Client) -> None:
    """What script-src 'self' requires: every script is a file served by the portal."""
    for url in ("/", "/instances/", "/teams/", "/audit/", "/login/"):
        html = admin_client_.get(url).content.decode()
        for tag in re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S):
            assert not tag.strip(), (url, tag[:200])
        assert not re.search(r"\son[a-z]+=", html), url  # no inline event handlers


def test_the_api_docs_page_runs_under_the_policy(admin_client_: Client) -> None:
    """Swagger UI starts itself with an inline script: only its page allows one, and still no other origin."""
    response = admin_client_.get("/api/v1/docs/")
    csp = dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))
    assert set(csp["script-src"].split()) <= {"'self'", "'unsafe-inline'"}
    assert csp["frame-ancestors"] == "'none'"
    assert "'unsafe-inline'" not in admin_client_.get("/")["Content-Security-Policy"].split("script-src")[1].split(";")[0]
    html = response.content.decode()
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', html)
    assert scripts and all(src.startswith("/") for src in scripts), scripts  # served by the portal
    for src in scripts:
        assert admin_client_.get(src).status_code == 200, src
    assert admin_client_.get("/api/v1/schema/").status_code == 200


def test_request_ids_are_echoed_or_generated(client: Client, db: Any) -> None:
    assert client.get("/healthz", HTTP_X_REQUEST_ID="lb-123")["X-Request-ID"] == "lb-123"
    first, second = client.get("/healthz")["X-Request-ID"], client.get("/healthz")["X-Request-ID"]
    assert first and second and first != second


def _sign_in(client: Client, username: str, password: str) -> Any:
    return client.post("/login/", {"username": username, "password": password})


def test_sign_in_is_locked_after_five_failures_per_username_and_address(alice: Any, bob: Any) -> None:
    client = Client()
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        response = _sign_in(client, "alice", "wrong")
        assert response.status_code == 200 and "locked" not in response.content.decode()
    locked = _sign_in(client, "alice", "alice-pass-123")  # even the right password
    assert locked.status_code == 200
    assert "Too many failed sign-in attempts" in locked.content.decode()
    assert "_auth_user_id" not in client.session
    # Another account from the same address, and the same account from another address, are not locked.
    assert _sign_in(Client(), "bob", "bob-pass-123").status_code == 302
    elsewhere = Client(REMOTE_ADDR="10.1.2.3")
    assert _sign_in(elsewhere, "alice", "alice-pass-123").status_code == 302


def test_a_successful_sign_in_resets_the_count(alice: Any) -> None:
    client = Client()
    for _ in range(settings.LOGIN_FAILURE_LIMIT - 1):
        _sign_in(client, "alice", "wrong")
    assert _sign_in(client, "alice", "alice-pass-123").status_code == 302
    client.logout()
    for _ in range(settings.LOGIN_FAILURE_LIMIT - 1):
        _sign_in(client, "alice", "wrong")
    assert _sign_in(client, "alice", "alice-pass-123").status_code == 302


def test_forms_need_the_csrf_token(admin_user: Any, team_a: Any) -> None:
    client = signed_in(admin_user, enforce_csrf_checks=True)
    response = client.post(f"/teams/{team_a.pk}/", {"action": "delete"})
    assert response.status_code == 403
    assert client.get(f"/teams/{team_a.pk}/").status_code == 200  # still there


def test_error_pages_show_no_secrets(admin_client_: Client, client: Client) -> None:
    assert settings.DEBUG is False
    response = admin_client_.get("/no/such/page/")
    html = response.content.decode()
    assert response.status_code == 404 and "Not found" in html
    assert settings.SECRET_KEY not in html and "Traceback" not in html and "settings" not in html.lower()
    api = admin_client_.get("/api/v1/no-such-endpoint/")
    assert api.status_code == 404 and api.json() == {"detail": "Not found.", "code": "not_found"}
    error = views.server_error(RequestFactory().get("/boom/"))
    assert error.status_code == 500 and b"Something went wrong" in error.content
    assert settings.SECRET_KEY.encode() not in error.content and b"Traceback" not in error.content
    api_error = views.server_error(RequestFactory().get("/api/v1/boom/"))
    assert api_error.status_code == 500 and b"Internal server error" in api_error.content


def test_cookies_are_http_only_and_secure_when_configured() -> None:
    assert settings.SESSION_COOKIE_HTTPONLY is True
    assert settings.SESSION_COOKIE_AGE <= 24 * 60 * 60
    # Behind HTTPS (SECURE_COOKIES, the default with a production database), both cookies are Secure.
    from catalog_portal import settings as production

    assert production.SESSION_COOKIE_SECURE == production.SECURE_COOKIES
    assert production.CSRF_COOKIE_SECURE == production.SECURE_COOKIES
