"""Token sign-in for the API that remembers when each token was last used (shown on the account page)."""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import TokenAuthentication

from teams.services import token_touch


class TrackedTokenAuthentication(TokenAuthentication):
    """DRF's `Authorization: Token <key>`, plus a note of when the token was last used."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        user, token = super().authenticate_credentials(key)
        token_touch(token=token)
        return user, token
