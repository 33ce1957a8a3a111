"""Forms of the teams and audit pages: they parse what people type; the services do the work."""

from __future__ import annotations

import re
from typing import Any

from django import forms

from teams.models import Membership


class PlainForm(forms.Form):
    """Labels without Django's trailing colon, as on the other pages."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class TeamForm(PlainForm):
    name = forms.CharField(max_length=100)
    namespaces = forms.CharField(required=False, help_text="Separated by spaces or commas. A namespace belongs to "
                                 "at most one team.", widget=forms.TextInput(attrs={"autocomplete": "off"}))

    def clean_namespaces(self) -> list[str]:
        return [ns for ns in re.split(r"[\s,]+", self.cleaned_data.get("namespaces") or "") if ns]


class MemberForm(PlainForm):
    username = forms.CharField(max_length=150, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.DEVELOPER)


class AuditFilterForm(PlainForm):
    actor = forms.CharField(required=False, help_text="A username; '-' for the portal itself.")
    action = forms.CharField(required=False, help_text="e.g. instance.create, or instance for all of them.")
    target = forms.CharField(required=False, help_text="An id, or type:id.")
    since = forms.CharField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}),
                            help_text="On or after this day.")
    until = forms.CharField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}),
                            help_text="Up to the end of this day.")

    def filters(self) -> dict[str, Any]:
        if not self.is_valid():
            return {}
        return {key: value for key, value in self.cleaned_data.items() if value}
