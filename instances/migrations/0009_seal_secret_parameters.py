"""Seal the secret-like parameters already stored in clear (instances, bindings, the operations' stored requests):
what the services store for new ones since secret parameters are encrypted at rest (instances.sealed)."""

from django.db import migrations

from instances.sealed import seal as _seal


def seal(value, *schemas):
    try:
        return _seal(value, *schemas)
    except RecursionError:  # nested deeper than any parameters accepted now: left as they are
        return value


def _schema(plan, *path):
    node = plan.schemas if plan is not None else None
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def seal_stored_parameters(apps, schema_editor):
    ServiceInstance = apps.get_model("instances", "ServiceInstance")
    ServiceBinding = apps.get_model("instances", "ServiceBinding")
    Operation = apps.get_model("instances", "Operation")
    for instance in ServiceInstance.objects.select_related("plan").exclude(parameters={}).iterator():
        schemas = (_schema(instance.plan, "service_instance", "create", "parameters"),
                   _schema(instance.plan, "service_instance", "update", "parameters"))
        sealed = seal(instance.parameters, *schemas)
        if sealed != instance.parameters:
            ServiceInstance.objects.filter(pk=instance.pk).update(parameters=sealed)
    for binding in ServiceBinding.objects.select_related("instance__plan").exclude(parameters={}).iterator():
        sealed = seal(binding.parameters, _schema(binding.instance.plan, "service_binding", "create", "parameters"))
        if sealed != binding.parameters:
            ServiceBinding.objects.filter(pk=binding.pk).update(parameters=sealed)
    for op in Operation.objects.select_related("instance__plan").iterator():
        request = op.request
        if not isinstance(request, dict) or not request.get("parameters"):
            continue
        plan = op.instance.plan if op.instance_id else None
        if request.get("kind") == "bind":
            schemas = (_schema(plan, "service_binding", "create", "parameters"),)
        else:
            schemas = (_schema(plan, "service_instance", "create", "parameters"),
                       _schema(plan, "service_instance", "update", "parameters"))
        sealed = {**request, "parameters": seal(request["parameters"], *schemas)}
        if sealed != request:
            Operation.objects.filter(pk=op.pk).update(request=sealed)


class Migration(migrations.Migration):

    dependencies = [
        ("instances", "0008_parameters_decode_any_nesting"),
    ]

    operations = [
        migrations.RunPython(seal_stored_parameters, migrations.RunPython.noop),
    ]
