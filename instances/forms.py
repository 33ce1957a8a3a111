"""Forms of the store pages: they parse and shape what people type; the services do the work."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from django import forms
from django.conf import settings
from django.db.models import QuerySet

from brokers.models import ServicePlan
from catalog_portal.exceptions import ApplicationError
from instances import schema_form
from instances.models import ServiceInstance
from instances.services.validation import check_dns_label, deep_merge, parameters_for_update, schema_errors
from instances.states import InstanceState
from teams import access
from teams.models import TeamNamespace

DNS_HELP = "Lowercase letters, digits and '-', at most 63 characters."


def _dns_label(value: str, field: str) -> str:
    try:
        return check_dns_label(value, field=field)
    except ApplicationError as exc:
        raise forms.ValidationError(exc.fields.get(field) or [exc.message]) from None


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


class ParametersForm:
    """A plan schema's parameters: the generated fields, or the raw JSON editor, on one page form.

    Unbound, it starts from the schema's defaults (create) or the instance's current parameters (update).
    Bound, it keeps exactly what was typed, so a page re-rendered with errors shows it back. In update mode
    only the values that differ from the current parameters are sent.
    """

    def __init__(
        self,
        schema: Mapping[str, Any] | None,
        *,
        prefix: str,
        mode: str = "create",
        data: Mapping[str, Any] | None = None,
        current: Mapping[str, Any] | None = None,
    ) -> None:
        self.schema = dict(schema) if schema else None
        self.spec = schema_form.build_form(schema, mode=mode)
        self.prefix, self.mode, self.current = prefix, mode, dict(current or {})
        self.errors: dict[str, list[str]] = {}
        self.non_field_errors: list[str] = []
        self.json_errors: list[str] = []
        self.parameters: dict[str, Any] | None = None
        self.focus_id = ""  # what to focus after an editor button re-rendered the form
        self.is_bound = data is not None
        if data is None:
            start = self._start()
            self.json_mode = not self.spec.supported
            self.data, _ = schema_form.flatten(self.spec, start)
            self.json_text = _dump(start if mode == "create" else {})
        else:
            self.json_mode = data.get(self.mode_name) == "json" or not self.spec.supported
            own = {key[len(prefix):]: schema_form.getlist(data, key) for key in data if key.startswith(prefix)}
            self.data = schema_form.normalize(self.spec, own)
            self.json_text = str(data.get(self.json_name, "") or "")

    def _start(self) -> dict[str, Any]:
        if self.mode == "update":
            return self.current
        if self.spec.supported:
            return schema_form.defaults(self.spec)
        props = (self.schema or {}).get("properties") or {}
        return {k: v["default"] for k, v in props.items() if isinstance(v, dict) and "default" in v}

    # names of the page inputs that carry the editor's state
    @property
    def mode_name(self) -> str:
        return f"{self.prefix}__mode"

    @property
    def json_name(self) -> str:
        return f"{self.prefix}__json"

    @property
    def container_id(self) -> str:
        return schema_form.html_id(f"{self.prefix}params")

    @property
    def json_id(self) -> str:
        return schema_form.html_id(self.json_name)

    @property
    def bound_fields(self) -> list[schema_form.BoundField]:
        return schema_form.bind(self.spec, self.data, self.errors, prefix=self.prefix)

    @property
    def schema_text(self) -> str:
        return _dump(self.schema) if self.schema else ""

    @property
    def has_errors(self) -> bool:
        return bool(self.errors or self.non_field_errors or self.json_errors)

    # --- the editor's own buttons (no request is sent to anyone) ---------------------------------------------

    def handle(self, action: str) -> bool:
        """Carry out a button of the editor itself (switch mode, add or remove a row); False if it isn't one."""
        if action == "json" and not self.json_mode:
            self._to_json()
            self.focus_id = self.json_id if self.json_mode else ""
        elif action == "form" and self.json_mode:
            self._to_form()
        elif action.startswith("add:"):
            path = action[4:]
            if self._rows_field(path):
                self.data = schema_form.add_row(self.spec, self.data, path)
                rows = self.data.get(f"{path}.{schema_form.ROWS}", [])
                self.focus_id = schema_form.html_id(f"{self.prefix}{path}.{len(rows) - 1}")
        elif action.startswith("remove:"):
            path, _, index = action[7:].rpartition(":")
            if self._rows_field(path) and index.isdigit():
                self.data = schema_form.remove_row(self.spec, self.data, path, int(index))
                self.focus_id = schema_form.html_id(f"{self.prefix}{path}")
        else:
            return action in ("json", "form")
        return True

    def _rows_field(self, path: str) -> bool:
        found, found_path = schema_form.find_field(self.spec, path)
        return found is not None and found.kind == "rows" and found_path == path

    def _to_json(self) -> None:
        params, errors = schema_form.parse(self.spec, self.data)
        if errors:
            self.errors = errors
            self.non_field_errors = ["Correct the values marked below before switching to JSON."]
            return
        self.json_text = _dump(params if self.mode == "create" else schema_form.changes(params, self.current))
        self.json_mode = True

    def _to_form(self) -> None:
        if not self.spec.supported:
            return
        params = self._json_parameters()
        if params is None:
            return
        _, lost = schema_form.flatten(self.spec, params)
        if lost:
            self.json_errors = [
                f"The form cannot show {', '.join(lost)}. Keep editing as JSON, or remove "
                f"{'it' if len(lost) == 1 else 'them'} first."
            ]
            return
        shown = deep_merge(self.current, params) if self.mode == "update" else params
        self.data, _ = schema_form.flatten(self.spec, shown)
        self.json_mode = False

    def _json_parameters(self) -> dict[str, Any] | None:
        text = self.json_text.strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            self.json_errors = [f"This is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."]
            return None
        except RecursionError:
            self.json_errors = [f"Parameters may be nested at most {settings.PARAMETERS_MAX_DEPTH} levels deep "
                                "(PARAMETERS_MAX_DEPTH)."]
            return None
        if not isinstance(value, dict):
            self.json_errors = ['Parameters must be a JSON object: {"name": value, …}.']
            return None
        return value

    # --- validation -----------------------------------------------------------------------------------------

    def typed_parameters(self) -> dict[str, Any] | None:
        """What would be sent, as far as it can be typed (None if the JSON cannot be read). An update sends each
        changed top-level key whole (`parameters_for_update`).

        Values that cannot be typed are left out and marked with an error beside their field.
        """
        if self.json_mode:
            params = self._json_parameters()
            if params is None or self.mode == "create":
                return params
            return parameters_for_update(current=self.current, changes=params)
        params, errors = schema_form.parse(self.spec, self.data)
        for path, messages in errors.items():
            self.errors.setdefault(path, []).extend(m for m in messages if m not in self.errors.get(path, []))
        if self.mode == "create":
            return params
        return parameters_for_update(current=self.current, changes=schema_form.changes(params, self.current))

    def is_valid(self) -> bool:
        """Type the values, then check them against the plan's schema with the service's validation."""
        params = self.typed_parameters()
        if params is None:
            return False
        typing_errors = set(self.errors)
        messages = schema_errors(self.schema, params)
        if typing_errors and not self.json_mode:  # a value left out for a typing error is not also "missing"
            by_path, _ = schema_form.map_errors(self.spec, messages)
            skipped = {p for p in by_path if p in typing_errors}
            messages = [m for m in messages if not any(_about(self.spec, m, p) for p in skipped)]
        self.add_service_errors(messages)
        self.parameters = params
        return not self.has_errors

    def add_service_errors(self, messages: list[str]) -> None:
        """Put the schema's messages ("path: message") beside their fields, or above the editor."""
        if not messages:
            return
        if self.json_mode:
            self.json_errors.extend(messages)
            return
        by_path, rest = schema_form.map_errors(self.spec, messages)
        for path, errors in by_path.items():
            self.errors.setdefault(path, []).extend(e for e in errors if e not in self.errors.get(path, []))
        self.non_field_errors.extend(rest)

    def error_items(self) -> list[tuple[str, str, str]]:
        """(label, input id, message) of every problem, in page order (the error summary's links)."""
        items = [("Parameters", self.container_id, message) for message in self.non_field_errors]
        items += [("Parameters as JSON", self.json_id, message) for message in self.json_errors]
        return items + schema_form.error_items(self.bound_fields)

    def masked(self, params: Mapping[str, Any] | None) -> Any:
        return schema_form.mask_secrets(self.schema, params) if params is not None else None


def _about(spec: schema_form.FormSpec, message: str, path: str) -> bool:
    by_path, _ = schema_form.map_errors(spec, [message])
    return path in by_path


def error_summary(form: forms.Form, params: ParametersForm | None = None) -> list[tuple[str, str, str]]:
    """Every problem of a submitted page form as (label, input id, message): the summary at the top of the form
    links each one to its field. A problem of the whole form has no label and links to the form."""
    items: list[tuple[str, str, str]] = []
    for name, messages in form.errors.items():
        if name == forms.forms.NON_FIELD_ERRORS:
            items += [("", "", str(message)) for message in messages]
        else:
            bound = form[name]
            items += [(str(bound.label), bound.auto_id, str(message)) for message in messages]
    return items + (params.error_items() if params is not None else [])


def apply_service_error(exc: ApplicationError, form: forms.Form, params: ParametersForm | None = None) -> None:
    """Show a service's refusal on the page: field errors beside their fields, the rest above the form."""
    placed = False
    for field, errors in exc.fields.items():
        if field == "parameters" and params is not None:
            params.add_service_errors(list(errors))
            if not params.non_field_errors and not params.json_errors:
                params.non_field_errors.append(exc.message)
            placed = True
        elif field in form.fields:
            form.add_error(field, list(errors))
            placed = True
    if not placed:
        form.add_error(None, exc.message)


# --- the provision form ------------------------------------------------------------------------------------

NAME_ATTRS = {"autocomplete": "off", "spellcheck": "false", "autocapitalize": "none"}


class PortalForm(forms.Form):
    required_css_class = "required"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


def _limit_namespaces(field: forms.Field, namespaces: list[str] | None, *, required: bool = True) -> forms.Field:
    """People choose among their own namespaces (a select); platform admins may type any (with suggestions)."""
    if namespaces is None:
        return field
    choices = [(ns, ns) for ns in namespaces]
    if not required:
        choices = [("", "The instance's namespace"), *choices]
    return forms.ChoiceField(choices=choices, required=required, label=field.label, help_text=field.help_text)


class ProvisionForm(PortalForm):
    name = forms.CharField(max_length=63, help_text=DNS_HELP + " Unique in its namespace.",
                           widget=forms.TextInput(attrs=NAME_ATTRS))
    namespace = forms.CharField(max_length=63, help_text="Where the instance and its bindings' Secrets live.",
                                widget=forms.TextInput(attrs={**NAME_ATTRS, "list": "namespace-options"}))

    def __init__(self, *args: Any, namespaces: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["namespace"] = _limit_namespaces(self.fields["namespace"], namespaces)
        if namespaces == []:
            self.fields["namespace"].help_text = ("You are not a developer in any team's namespace; ask a team admin "
                                                  "to add you.")

    def clean_name(self) -> str:
        return _dns_label(self.cleaned_data["name"], "name")

    def clean_namespace(self) -> str:
        return _dns_label(self.cleaned_data["namespace"], "namespace")


def writable_namespaces(user: Any) -> list[str] | None:
    """The namespaces `user` may provision and bind in, sorted; None = any (platform admins)."""
    allowed = access.namespaces_for(user, "developer")
    return None if allowed is None else sorted(allowed)


def default_namespace(user: Any, choices: list[str] | None = None) -> str:
    """The namespace of the person's newest instance (if they may still use it), else their first, else "default"."""
    recent = ServiceInstance.objects.filter(requested_by=user).order_by("-created_at")
    if choices is not None:
        recent = recent.filter(namespace__in=choices)
    found = recent.values_list("namespace", flat=True).first()
    return found or (choices[0] if choices else "default")


def known_namespaces(user: Any = None) -> list[str]:
    """Namespaces to suggest or filter by: those `user` may see (platform admins: every namespace in use)."""
    allowed = access.namespaces_for(user) if user is not None else None
    if allowed is not None:
        return sorted(allowed)
    used = set(ServiceInstance.objects.visible().values_list("namespace", flat=True).distinct())
    return sorted(used | set(TeamNamespace.objects.values_list("namespace", flat=True)))


# --- the instance page's forms ----------------------------------------------------------------------------


class PlanChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: ServicePlan) -> str:
        return obj.title


class UpdateForm(PortalForm):
    plan = PlanChoiceField(queryset=ServicePlan.objects.none(), required=False, empty_label=None,
                           help_text="Only plans of the same service are offered.")
    upgrade = forms.BooleanField(required=False)

    def __init__(self, *args: Any, instance: ServiceInstance, plans: QuerySet[ServicePlan] | None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("initial", {"plan": instance.plan_id})
        super().__init__(*args, **kwargs)
        self.instance = instance
        self.plan_choice = plans is not None
        if plans is None:
            del self.fields["plan"]
        else:
            self.fields["plan"].queryset = plans
        version = (instance.plan.maintenance_info or {}).get("version")
        self.new_version = version if version and version != (instance.maintenance_info or {}).get("version") else None
        if self.new_version:
            description = (instance.plan.maintenance_info or {}).get("description") or ""
            self.fields["upgrade"].label = f"Upgrade to version {self.new_version}"
            self.fields["upgrade"].help_text = description
        else:
            del self.fields["upgrade"]

    def target_plan(self) -> ServicePlan:
        """The plan the parameters are for: the chosen one if it is one of the offered plans."""
        if self.plan_choice and self.is_bound and is_uuid(self.data.get("plan")):
            chosen = self.fields["plan"].queryset.filter(pk=self.data["plan"]).first()
            if chosen is not None:
                return chosen
        return self.instance.plan

    def clean_plan(self) -> ServicePlan | None:
        plan = self.cleaned_data.get("plan")
        return None if plan is None or plan.pk == self.instance.plan_id else plan


def is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def update_plans(instance: ServiceInstance) -> QuerySet[ServicePlan] | None:
    """The plans an instance may move to (the same service's, if its plan is updatable), or None."""
    if not instance.plan.effective_plan_updateable:
        return None
    return ServicePlan.objects.filter(offering_id=instance.plan.offering_id, active=True).select_related("offering")


class DeprovisionForm(PortalForm):
    confirm = forms.CharField(label="Type the instance name to confirm", max_length=63,
                              widget=forms.TextInput(attrs=NAME_ATTRS))
    cascade = forms.BooleanField(required=False, label="Unbind its bindings first")

    def __init__(self, *args: Any, instance: ServiceInstance, binding_count: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.instance = instance
        self.binding_count = binding_count
        self.fields["confirm"].label = f"Type {instance.name} to confirm"
        self.fields["confirm"].widget.attrs["data-confirm-name"] = instance.name
        if binding_count:
            noun = "binding" if binding_count == 1 else "bindings"
            self.fields["cascade"].label = f"Also unbind its {binding_count} {noun} (their credentials stop working)"
        else:
            del self.fields["cascade"]

    def clean_confirm(self) -> str:
        value = self.cleaned_data["confirm"].strip()
        if value != self.instance.name:
            raise forms.ValidationError(f"Type the name exactly as shown: {self.instance.name}")
        return value


class BindingForm(PortalForm):
    name = forms.CharField(max_length=63, help_text=DNS_HELP, widget=forms.TextInput(attrs=NAME_ATTRS))
    namespace = forms.CharField(max_length=63, required=False, help_text="Where the credentials' Secret is created.",
                                widget=forms.TextInput(attrs=NAME_ATTRS))
    secret_name = forms.CharField(max_length=253, required=False, label="Secret name",
                                  help_text="Defaults to the binding's name.", widget=forms.TextInput(attrs=NAME_ATTRS))

    def __init__(self, *args: Any, instance: ServiceInstance, namespaces: list[str] | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("initial", {"namespace": instance.namespace})
        kwargs.setdefault("prefix", "bind")
        super().__init__(*args, **kwargs)
        self.fields["namespace"] = _limit_namespaces(self.fields["namespace"], namespaces, required=False)

    def clean_name(self) -> str:
        return _dns_label(self.cleaned_data["name"], "name")

    def clean_namespace(self) -> str | None:
        value = self.cleaned_data.get("namespace") or ""
        return _dns_label(value, "namespace") if value else None

    def clean_secret_name(self) -> str | None:
        value = self.cleaned_data.get("secret_name") or ""
        return _dns_label(value, "secret_name") if value else None


# --- the instance list's filters ----------------------------------------------------------------------------


class InstanceFilterForm(PortalForm):
    namespace = forms.ChoiceField(required=False)
    service = forms.ChoiceField(required=False)
    state = forms.ChoiceField(required=False)

    def __init__(self, *args: Any, namespaces: list[str], services: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        asked = self.data.get("namespace") if self.is_bound else None
        if asked and asked not in namespaces:  # a namespace without instances: filter to nothing, don't ignore
            namespaces = [*namespaces, asked]
        self.fields["namespace"].choices = [("", "All namespaces"), *((n, n) for n in namespaces)]
        self.fields["service"].choices = [("", "All services"), *services]
        states = [(value, label) for value, label in InstanceState.choices if value != InstanceState.DELETED]
        self.fields["state"].choices = [("", "Any state"), *states]

    def filters(self) -> dict[str, str]:
        """The valid filters (an unknown namespace or state is ignored rather than failing the page)."""
        if not self.is_bound:
            return {}
        self.is_valid()
        return {key: value for key, value in self.cleaned_data.items() if value}
