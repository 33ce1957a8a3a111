"""Settings from the environment: a bad value stops the start with a message naming the variable."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings

from catalog_portal import crypto
from catalog_portal.env import env_bool, env_int, env_list, env_str, secret_from_file
from tests.conftest import signed_in

ROOT = Path(__file__).resolve().parent.parent
VAR = "PORTAL_TEST_SETTING"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VAR, raising=False)
    monkeypatch.delenv(f"{VAR}_FILE", raising=False)


# --- env_bool ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", "on", " True "])
def test_env_bool_true(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(VAR, value)
    assert env_bool(VAR, False) is True


@pytest.mark.parametrize("value", ["0", "false", "False", "no", "off"])
def test_env_bool_false(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(VAR, value)
    assert env_bool(VAR, True) is False


def test_env_bool_default_when_unset() -> None:
    assert env_bool(VAR, True) is True
    assert env_bool(VAR, False) is False


@pytest.mark.parametrize("value", ["maybe", "2", "truee", "y e s"])
def test_env_bool_refuses_other_values_naming_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(VAR, value)
    with pytest.raises(ImproperlyConfigured) as excinfo:
        env_bool(VAR, False)
    assert VAR in str(excinfo.value)
    assert repr(value) in str(excinfo.value)


# --- env_int -------------------------------------------------------------------------------------------


def test_env_int_reads_numbers_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_int(VAR, 42) == 42
    monkeypatch.setenv(VAR, "")
    assert env_int(VAR, 42) == 42
    monkeypatch.setenv(VAR, " 17 ")
    assert env_int(VAR, 42, minimum=10) == 17
    monkeypatch.setenv(VAR, "10")
    assert env_int(VAR, 42, minimum=10) == 10


@pytest.mark.parametrize("value", ["abc", "1.5", "10s", "0x10"])
def test_env_int_refuses_non_numbers_naming_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(VAR, value)
    with pytest.raises(ImproperlyConfigured) as excinfo:
        env_int(VAR, 1)
    assert VAR in str(excinfo.value)
    assert "whole number" in str(excinfo.value)


@pytest.mark.parametrize("value", ["9", "0", "-5"])
def test_env_int_enforces_the_minimum(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(VAR, value)
    with pytest.raises(ImproperlyConfigured) as excinfo:
        env_int(VAR, 60, minimum=10)
    message = str(excinfo.value)
    assert VAR in message and "at least 10" in message


# --- env_str, _FILE, env_list ------------------------------------------------------------------------------


def test_env_str_value_and_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_str(VAR) is None
    assert env_str(VAR, "fallback") == "fallback"
    monkeypatch.setenv(VAR, "")
    assert env_str(VAR, "fallback") == "fallback"
    monkeypatch.setenv(VAR, "value")
    assert env_str(VAR) == "value"


def test_env_str_reads_the_file_named_by_name_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv(VAR, "from-the-environment")
    monkeypatch.setenv(f"{VAR}_FILE", str(secret))

    assert env_str(VAR) == "from-a-file"  # the file wins, stripped of its newline


def test_an_unreadable_name_file_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "does-not-exist"
    monkeypatch.setenv(f"{VAR}_FILE", str(missing))
    with pytest.raises(ImproperlyConfigured) as excinfo:
        env_str(VAR)
    assert f"{VAR}_FILE" in str(excinfo.value)
    assert str(missing) in str(excinfo.value)


def test_env_list(monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_list(VAR, ["default"]) == ["default"]
    monkeypatch.setenv(VAR, "a.example.com, b.example.com,,  ,c")
    assert env_list(VAR, []) == ["a.example.com", "b.example.com", "c"]


def test_secret_from_file_is_generated_once_with_mode_600(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "generated.key"
    calls: list[int] = []

    def generate() -> str:
        calls.append(1)
        return f"generated-{len(calls)}"

    first = secret_from_file(path, generate)
    second = secret_from_file(path, generate)

    assert first == second == "generated-1"
    assert len(calls) == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# --- the real start ------------------------------------------------------------------------------------


def django_setup(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    environment.update(DJANGO_SETTINGS_MODULE="catalog_portal.settings", PORTAL_DATA_DIR=str(tmp_path), **env)
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_good_environment_starts(tmp_path: Path) -> None:
    result = django_setup(tmp_path, DEBUG="false")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DEBUG", "maybe"),
        ("SESSION_COOKIE_AGE", "ten"),
        ("SESSION_COOKIE_AGE", "5"),
        ("OSB_REQUEST_TIMEOUT", "0"),
        ("DATABASE_URL", "not a database url"),
        ("K8S_ENABLED", "perhaps"),
    ],
)
def test_a_bad_value_stops_the_start_naming_the_variable(tmp_path: Path, name: str, value: str) -> None:
    result = django_setup(tmp_path, **{name: value})

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert name in last_line, result.stderr[-2000:]


def test_a_missing_secret_file_stops_the_start(tmp_path: Path) -> None:
    result = django_setup(tmp_path, SECRET_KEY_FILE=str(tmp_path / "nope"))
    assert result.returncode != 0
    assert "SECRET_KEY_FILE" in result.stderr.strip().splitlines()[-1]


def test_a_bad_credentials_key_stops_the_start(tmp_path: Path) -> None:
    for key in ("garbage", f"{Fernet.generate_key().decode()},garbage"):
        result = django_setup(tmp_path, CREDENTIALS_KEY=key)
        assert result.returncode != 0
        assert "CREDENTIALS_KEY" in result.stderr.strip().splitlines()[-1]
    good = f"{Fernet.generate_key().decode()}, {Fernet.generate_key().decode()}"
    assert django_setup(tmp_path, CREDENTIALS_KEY=good).returncode == 0


# --- CREDENTIALS_KEY -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["garbage", "", " , ", "short,keys"])
def test_a_bad_credentials_key_is_named_when_used(key: str) -> None:
    with override_settings(CREDENTIALS_KEY=key), pytest.raises(ImproperlyConfigured) as excinfo:
        crypto.encrypt("secret")
    assert "CREDENTIALS_KEY" in str(excinfo.value)
    with pytest.raises(ImproperlyConfigured):
        crypto.validate_key(key)


def test_credentials_key_rotation() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(CREDENTIALS_KEY=old):
        token = crypto.encrypt("s3cret")
        assert "s3cret" not in token
    with override_settings(CREDENTIALS_KEY=f"{new},{old}"):
        assert crypto.decrypt(token) == "s3cret"  # an older listed key still decrypts
        newer = crypto.encrypt("s3cret")
    with override_settings(CREDENTIALS_KEY=new):
        assert crypto.decrypt(newer) == "s3cret"  # new values use the first key
        with pytest.raises(ImproperlyConfigured) as excinfo:
            crypto.decrypt(token)  # the old key was dropped
    assert "CREDENTIALS_KEY" in str(excinfo.value)


def test_json_round_trip() -> None:
    with override_settings(CREDENTIALS_KEY=Fernet.generate_key().decode()):
        value: dict[str, Any] = {"uri": "postgres://u:p@h/db", "port": 5432}
        assert crypto.decrypt_json(crypto.encrypt_json(value)) == value


# --- login required --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/account/", f"/services/{'0' * 8}-0000-0000-0000-{'0' * 12}/"])
def test_pages_require_login(path: str) -> None:
    response = Client().get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={path}"


@pytest.mark.django_db
def test_login_page_and_health_check_are_public() -> None:
    client = Client()
    assert client.get("/login/").status_code == 200
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}


@pytest.mark.django_db
def test_a_logged_in_user_sees_the_marketplace(alice: Any) -> None:
    client = signed_in(alice)
    assert client.get("/").status_code == 200
