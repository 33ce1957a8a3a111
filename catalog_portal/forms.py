"""The sign-in forms (with their lock-out): the portal's /login/ and the admin's /admin/login/ count failures in
one place, so neither path gets more tries than LOGIN_FAILURE_LIMIT."""

from __future__ import annotations

import hashlib
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache


class LockoutMixin:
    """A lock for a sign-in form: too many failures for one username from one address lock that pair out for
    a while (counted in Django's cache, shared by every sign-in form), whatever password is tried next."""

    data: Any
    request: Any

    def _key(self) -> str:
        username = str(self.data.get("username", "")).strip().lower()
        address = self.request.META.get("REMOTE_ADDR", "") if self.request is not None else ""
        digest = hashlib.sha256(f"{username}\n{address}".encode()).hexdigest()
        return f"login-failures:{digest}"

    def clean(self) -> dict[str, Any]:
        key = self._key()
        if (cache.get(key) or 0) >= settings.LOGIN_FAILURE_LIMIT:
            minutes = max(1, round(settings.LOGIN_LOCKOUT_SECONDS / 60))
            raise forms.ValidationError(
                f"Too many failed sign-in attempts for this account from your address. Sign-in is locked; try "
                f"again in {minutes} minutes.", code="locked")
        try:
            data = super().clean()  # type: ignore[misc]
        except forms.ValidationError:
            if not cache.add(key, 1, settings.LOGIN_LOCKOUT_SECONDS):
                try:
                    cache.incr(key)
                except ValueError:  # expired in between
                    cache.set(key, 1, settings.LOGIN_LOCKOUT_SECONDS)
            raise
        cache.delete(key)
        return data


class ThrottledAuthenticationForm(LockoutMixin, AuthenticationForm):
    """The portal's sign-in form (/login/)."""


class ThrottledAdminAuthenticationForm(LockoutMixin, AdminAuthenticationForm):
    """The admin site's sign-in form (/admin/login/): the same lock, the same counter."""
