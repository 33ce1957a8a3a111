"""Operation.request becomes a typed OSB request (brokers.osb.requests, format 1); `then_delete` becomes a field.

Before, `request` held the client's keyword arguments without the ids (the engine added them), and a cleanup after
a failed delete carried the portal's own note `then_delete` among them. Now it holds the request's fields:
`{"format": 1, "kind": ..., "instance_id": ..., ["binding_id": ...], ...}` (maintenance_info and previous_values
become maintenance_version, previous_plan_id and previous_maintenance_version); the note is `delete_on_success`.
Rows already in the new form are left alone, so running it twice changes nothing. Reversible.
"""

from django.db import migrations, models

FORMAT = 1
BATCH = 500


def _kind(op):
    """The kind of OSB request an operation of the old form sends."""
    if op.type == "orphan_mitigation":
        return "unbind" if op.binding_id else "deprovision"
    return op.type


def _version(value):
    return value.get("version") if isinstance(value, dict) else None


def to_typed(op):
    old = dict(op.request or {})
    if old.get("format") == FORMAT:
        return False
    op.delete_on_success = bool(old.pop("then_delete", False))
    new = {"format": FORMAT, "kind": _kind(op), "instance_id": str(op.instance_id)}
    if op.binding_id:
        new["binding_id"] = str(op.binding_id)
    if "maintenance_info" in old:
        old["maintenance_version"] = _version(old.pop("maintenance_info"))
    if "previous_values" in old:
        previous = old.pop("previous_values") or {}
        old["previous_plan_id"] = previous.get("plan_id")
        old["previous_maintenance_version"] = _version(previous.get("maintenance_info"))
    op.request = {**new, **old}
    return True


def to_keywords(op):
    new = dict(op.request or {})
    if new.get("format") != FORMAT:
        return False
    for key in ("format", "kind", "instance_id", "binding_id"):
        new.pop(key, None)
    version = new.pop("maintenance_version", None)
    if version:
        new["maintenance_info"] = {"version": version}
    if op.type == "update":
        previous = {"service_id": new["service_id"], "plan_id": new.pop("previous_plan_id", None)}
        previous_version = new.pop("previous_maintenance_version", None)
        if previous_version:
            previous["maintenance_info"] = {"version": previous_version}
        new["previous_values"] = {key: value for key, value in previous.items() if value is not None}
    new = {key: value for key, value in new.items() if value is not None}
    if op.type == "orphan_mitigation" and op.delete_on_success:
        new["then_delete"] = True
    op.request = new
    return True


def _convert(apps, schema_editor, change):
    operation = apps.get_model("instances", "Operation")
    rows = operation.objects.using(schema_editor.connection.alias).order_by("pk")
    batch = []
    for op in rows.iterator(chunk_size=BATCH):
        if change(op):
            batch.append(op)
        if len(batch) >= BATCH:
            operation.objects.using(schema_editor.connection.alias).bulk_update(batch, ["request", "delete_on_success"])
            batch = []
    if batch:
        operation.objects.using(schema_editor.connection.alias).bulk_update(batch, ["request", "delete_on_success"])


def forwards(apps, schema_editor):
    _convert(apps, schema_editor, to_typed)


def backwards(apps, schema_editor):
    _convert(apps, schema_editor, to_keywords)


class Migration(migrations.Migration):

    dependencies = [
        ("instances", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="operation",
            name="delete_on_success",
            field=models.BooleanField(default=False),
        ),
        migrations.RunPython(forwards, backwards),
    ]
