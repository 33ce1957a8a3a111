"""Encryption at rest for secrets (broker passwords, binding credentials) with CREDENTIALS_KEY.

CREDENTIALS_KEY is a Fernet key or a comma-separated list of them, newest first: new values are
encrypted with the first key, and any listed key decrypts, so keys can be rotated.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@lru_cache(maxsize=4)
def _fernet(keys: str) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.strip().encode()) for key in keys.split(",") if key.strip()])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "CREDENTIALS_KEY must be a Fernet key (32 url-safe base64-encoded bytes) or a comma-separated list"
        ) from exc


def encrypt(value: str) -> str:
    return _fernet(settings.CREDENTIALS_KEY).encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet(settings.CREDENTIALS_KEY).decrypt(token.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured("A stored secret cannot be decrypted with CREDENTIALS_KEY") from None


def encrypt_json(value: Any) -> str:
    return encrypt(json.dumps(value, separators=(",", ":"), sort_keys=True))


def decrypt_json(token: str) -> Any:
    return json.loads(decrypt(token))


def validate_key(keys: str) -> None:
    _fernet(keys)
