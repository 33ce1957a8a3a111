"""Token sign-in for the API that remembers when each token was last used (shown on the account page)."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from teams.services import token_touch


class TrackedTokenAuthentication(TokenAuthentication):
    """DRF's `Authorization: Token <key>`, plus a note of when the token was last used. The token, its user and its
    last use are read in one query, so a request within a minute of the last note costs nothing more."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        model = self.get_model()
        try:
            token = model.objects.select_related("user", "use").get(key=key)
        except model.DoesNotExist:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from None
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        token_touch(token=token)
        return token.user, token
