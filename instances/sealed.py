"""Secret-like parameters, one way everywhere: stored encrypted, masked when shown, revealed only on purpose.

A parameter is secret when the plan's schema marks it (`writeOnly`, `format: password`) or its name looks like one
(password, admin_password, secret, token, api_key, ...: `schema_form.is_secret`). The services store each such
value *sealed* — replaced by `{"$sealed": <Fernet token under CREDENTIALS_KEY>}` — in the instance's or binding's
parameters and in the operation's stored request. Shown anywhere (API, pages, previews), a sealed value is the
mask; the engine unseals the request only to send it to the broker; `instance_parameters_reveal` shows it to those
who may reveal credentials, audited.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from catalog_portal.crypto import decrypt_json, encrypt_json
from instances.schema_form import MASK, is_secret

SEALED = "$sealed"


def is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(SEALED), str)


def _sub(schemas: list[Any], key: str) -> list[Any]:
    out = []
    for schema in schemas:
        if not isinstance(schema, Mapping):
            continue
        props = schema.get("properties")
        sub = props.get(key) if isinstance(props, Mapping) else None
        if sub is None and isinstance(schema.get("additionalProperties"), Mapping):
            sub = schema["additionalProperties"]
        if isinstance(sub, Mapping):
            out.append(sub)
    return out


def _items(schemas: list[Any]) -> list[Any]:
    return [s["items"] for s in schemas if isinstance(s, Mapping) and isinstance(s.get("items"), Mapping)]


def seal(value: Any, *schemas: Any) -> Any:
    """A copy of `value` with every secret value (by any of `schemas`, or by name) sealed; sealed ones kept."""
    if is_sealed(value):
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            subs = _sub(list(schemas), str(key))
            secret = any(is_secret(str(key), s) for s in subs) or is_secret(str(key), None)
            if secret and item not in (None, "") and not is_sealed(item):
                out[key] = {SEALED: encrypt_json(item)}
            else:
                out[key] = seal(item, *subs)
        return out
    if isinstance(value, list):
        items = _items(list(schemas))
        return [seal(item, *items) for item in value]
    return value


def unseal(value: Any) -> Any:
    """A copy of `value` with every sealed value decrypted: what the broker is sent, what a reveal shows."""
    if is_sealed(value):
        return decrypt_json(value[SEALED])
    if isinstance(value, Mapping):
        return {key: unseal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unseal(item) for item in value]
    return value


def mask_sealed(value: Any) -> Any:
    """A copy of `value` with every sealed value replaced by the mask."""
    if is_sealed(value):
        return MASK
    if isinstance(value, Mapping):
        return {key: mask_sealed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [mask_sealed(item) for item in value]
    return value


def keep_masked(changes: Any, current: Any) -> Any:
    """`changes` with each value that is still the mask, where `current` holds a value, replaced by that value:
    a client that sends back what it was shown keeps the secret instead of setting it to the mask."""
    if isinstance(changes, Mapping) and isinstance(current, Mapping):
        return {key: (current[key] if item == MASK and key in current else keep_masked(item, current.get(key)))
                for key, item in changes.items()}
    return changes
