"""Forms of the teams and audit pages: they parse what people type; the services do the work."""

from __future__ import annotations

import re
from typing import Any

from django import forms

from teams.models import Membership


class TeamForm(forms.Form):
    name = forms.CharField(max_length=100)
    namespaces = forms.CharField(required=False, help_text="Separated by spaces or commas. A namespace belongs to "
                                 "at most one team.", widget=forms.TextInput(attrs={"autocomplete": "off"}))

    def clean_namespaces(self) -> list[str]:
        return [ns for ns in re.split(r"[\s,]+", self.cleaned_data.get("namespaces") or "") if ns]


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.DEVELOPER)


class AuditFilterForm(forms.Form):
    actor = forms.CharField(required=False, help_text="A username; '-' for the portal itself.")
    action = forms.CharField(required=False, help_text="e.g. instance.create, or instance for all of them.")
    target = forms.CharField(required=False, help_text="An id, or type:id.")
    since = forms.CharField(required=False, help_text="Date or ISO timestamp.")
    until = forms.CharField(required=False, help_text="Date or ISO timestamp.")

    def filters(self) -> dict[str, Any]:
        if not self.is_valid():
            return {}
        return {key: value for key, value in self.cleaned_data.items() if value}
